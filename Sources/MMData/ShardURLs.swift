import Foundation

/// Shard specifications as open_clip takes them (`expand_urls`): sources joined with `::`, each
/// brace-expanded (`{00000..00199}` keeps its zero padding, `{a,b}` lists alternatives, braces
/// nest), each URL a local path or `file://` URL. Any other scheme is refused with the URL named.
public enum ShardURLs {
    /// At most this many shards from one specification (a typo like `{0..99999999}` must not
    /// allocate forever).
    public static let maxShards = 10_000_000

    public static func expand(_ spec: String) throws -> [String] {
        var out: [String] = []
        for source in spec.components(separatedBy: "::") where !source.isEmpty {
            for url in try braceExpand(source) {
                out.append(try localPath(url))
                if out.count > maxShards { throw DataError.badShardSpec(spec: spec, reason: "expands to more than \(maxShards) shards") }
            }
        }
        if out.isEmpty { throw DataError.badShardSpec(spec: spec, reason: "names no shards") }
        return out
    }

    /// Whether a training argument names shards rather than a manifest: a brace range, `::`, or
    /// a `.tar` file.
    public static func looksLikeShards(_ argument: String) -> Bool {
        argument.contains("::") || argument.hasSuffix(".tar") || (argument.contains("{") && argument.contains("}") && argument.contains(".tar"))
    }

    static func localPath(_ url: String) throws -> String {
        if url.hasPrefix("file://") { return String(url.dropFirst("file://".count)) }
        if let colon = url.range(of: "://") {
            let scheme = url[..<colon.lowerBound]
            throw DataError.badShardSpec(spec: url, reason: "\(scheme):// shards are not supported (local paths and file:// only)")
        }
        for scheme in ["pipe:", "s3:", "gs:", "http:", "https:"] where url.hasPrefix(scheme) {
            throw DataError.badShardSpec(spec: url, reason: "\(scheme.dropLast()) shards are not supported (local paths and file:// only)")
        }
        return url
    }

    /// Bash-style brace expansion: the first outermost `{…}` with a `,` list or an `a..b`
    /// integer range is expanded, then the rest recursively.
    static func braceExpand(_ text: String) throws -> [String] {
        let chars = Array(text)
        guard let open = chars.firstIndex(of: "{") else { return [text] }
        var depth = 0, close: Int?
        for i in open..<chars.count {
            if chars[i] == "{" { depth += 1 }
            if chars[i] == "}" { depth -= 1; if depth == 0 { close = i; break } }
        }
        guard let close else { throw DataError.badShardSpec(spec: text, reason: "unbalanced '{'") }
        let head = String(chars[..<open]), body = String(chars[(open + 1)..<close]), tail = String(chars[(close + 1)...])
        var alternatives: [String]
        if let range = try integerRange(body) {
            alternatives = range
        } else {
            // Split on top-level commas.
            alternatives = []
            var depth = 0, current = ""
            for c in body {
                if c == "{" { depth += 1 }
                if c == "}" { depth -= 1 }
                if c == "," && depth == 0 { alternatives.append(current); current = "" } else { current.append(c) }
            }
            alternatives.append(current)
            if alternatives.count == 1 {  // "{x}" is literal, as in bash
                return try braceExpand(tail).map { head + "{" + body + "}" + $0 }
            }
            alternatives = try alternatives.flatMap { try braceExpand($0) }
        }
        let rest = try braceExpand(tail)
        guard alternatives.count.multipliedReportingOverflow(by: rest.count).partialValue <= maxShards else {
            throw DataError.badShardSpec(spec: text, reason: "expands to more than \(maxShards) shards")
        }
        return alternatives.flatMap { a in rest.map { head + a + $0 } }
    }

    /// `"00000..00199"` → the numbers, padded to the width of the first bound when it has a
    /// leading zero (as braceexpand does); nil when `body` is not a range.
    private static func integerRange(_ body: String) throws -> [String]? {
        let parts = body.components(separatedBy: "..")
        guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]),
            parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) })
        else { return nil }
        let count = abs(b - a) + 1
        guard count <= maxShards else { throw DataError.badShardSpec(spec: "{\(body)}", reason: "expands to more than \(maxShards) shards") }
        let padded = (parts[0].count > 1 && parts[0].hasPrefix("0")) || (parts[1].count > 1 && parts[1].hasPrefix("0"))
        let width = padded ? max(parts[0].count, parts[1].count) : 0
        let step = a <= b ? 1 : -1
        return stride(from: a, through: b, by: step).map { n in
            let s = String(n)
            return s.count < width ? String(repeating: "0", count: width - s.count) + s : s
        }
    }
}
