import Foundation

/// Where mm finds the data files a target ships (the CLIP vocabulary, model configs, prompt
/// templates). One policy for all, and no use of SwiftPM's `Bundle.module`, which stops the
/// process when the bundle is not beside the executable:
///
/// 1. the environment variable the caller names, if set (it must exist);
/// 2. the SwiftPM resource bundle `mm_<Target>.resources/` beside the running executable
///    (SwiftPM puts it there on `swift build`; copy it along when installing `mm`), then in
///    the main bundle's resource folder;
/// 3. `Sources/<Target>/` of the source checkout this library was built from.
public enum Resources {
    /// The first existing candidate for `relativePath` (e.g. `vocab/bpe_simple_vocab_16e6.txt.gz`)
    /// among `target`'s resources, or nil; `searched` lists every place looked at.
    public static func locate(_ relativePath: String, target: String, environment variable: String? = nil)
        -> (path: String?, searched: [String])
    {
        let candidates = self.candidates(relativePath, target: target, environment: variable)
        return (candidates.first { FileManager.default.fileExists(atPath: $0) }, candidates)
    }

    /// The places `locate` looks, in order.
    public static func candidates(_ relativePath: String, target: String, environment variable: String? = nil) -> [String] {
        if let variable, let value = ProcessInfo.processInfo.environment[variable], !value.isEmpty { return [value] }
        var candidates: [String] = []
        let bundle = "mm_\(target).resources"
        if let exe = Bundle.main.executableURL?.resolvingSymlinksInPath().deletingLastPathComponent() {
            candidates.append(exe.appendingPathComponent(bundle).appendingPathComponent(relativePath).path)
        }
        if let resources = Bundle.main.resourceURL {
            candidates.append(resources.appendingPathComponent(bundle).appendingPathComponent(relativePath).path)
        }
        // This file is Sources/MMFoundation/Resources.swift of the checkout.
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(sources.appendingPathComponent(target).appendingPathComponent(relativePath).path)
        var seen = Set<String>()
        return candidates.filter { seen.insert($0).inserted }
    }
}
