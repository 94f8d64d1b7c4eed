import Foundation
import MMFoundation

/// A small text file (templates, labels): a regular UTF-8 file of at most 64 MiB.
func readTextFile(_ path: String, what: String) throws -> String {
    let text: String?
    do { text = try ReadableFile(path, maxSize: 64 << 20).readText() } catch let error as FileError {
        throw EvalError("\(path): cannot read the \(what) (\(error.reason))")
    }
    guard let text else { throw EvalError("\(path): not UTF-8") }
    return text
}

/// Prompt templates for zero-shot classification: `{}` marks where the class name goes.
public enum PromptTemplates {
    /// `openai` (open_clip's 80 ImageNet prompts), `simple` (its 7), `none` (the bare name), or
    /// a file with one template per line.
    public static func named(_ name: String) throws -> [String] {
        switch name {
        case "none": return ["{}"]
        case "openai", "simple":
            guard let path = Resources.locate("templates/\(name).txt", target: "MMEval").path else {
                throw EvalError("the bundled '\(name)' templates are missing from this build")
            }
            return try parse(text: try readTextFile(path, what: "templates file"), file: path)
        default:
            return try parse(text: try readTextFile(name, what: "templates file"), file: name)
        }
    }

    /// One template per non-blank line; each must contain `{}`.
    public static func parse(_ data: Data, file: String) throws -> [String] {
        guard let text = String(data: data, encoding: .utf8) else { throw EvalError("\(file): not UTF-8") }
        return try parse(text: text, file: file)
    }

    /// One template per non-blank line (LF, CRLF or CR); each must contain `{}`.
    public static func parse(text: String, file: String) throws -> [String] {
        var templates: [String] = []
        for (n, line) in Text.lines(text).enumerated() {
            let t = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if t.isEmpty { continue }
            guard t.contains("{}") else { throw EvalError("\(file):\(n + 1): template '\(Text.excerpt(t[...]))' has no {} for the class name") }
            templates.append(t)
        }
        guard !templates.isEmpty else { throw EvalError("\(file): no templates (one per line, {} marks the class name)") }
        return templates
    }
}

/// Class names read from a labels file: one class per line, `a|b` gives synonyms of one class.
public struct ClassLabels: Equatable {
    /// Per class, its names; the first is the one reported.
    public var classes: [[String]]
    /// Lines whose class (first name, case-insensitive) already appeared, dropped.
    public var duplicates: [(line: Int, name: String)]

    public static func == (a: ClassLabels, b: ClassLabels) -> Bool {
        a.classes == b.classes && a.duplicates.map(\.line) == b.duplicates.map(\.line)
    }

    public init(contentsOf path: String) throws {
        try self.init(parsing: Data(try readTextFile(path, what: "labels file").utf8), file: path)
    }

    /// Blank lines are ignored; an empty result or non-UTF-8 text is an error.
    public init(parsing data: Data, file: String) throws {
        guard let text = String(data: data, encoding: .utf8) else { throw EvalError("\(file): not UTF-8") }
        var seen = Set<String>()
        classes = []
        duplicates = []
        for (n, line) in Text.lines(text).enumerated() {
            // A control character (a NUL, say) means this is not a text file of names.
            if let bad = line.unicodeScalars.first(where: { $0.properties.generalCategory == .control && $0 != "\t" }) {
                throw EvalError("\(file):\(n + 1): control character U+\(String(format: "%04X", bad.value)) in a label; not a labels file")
            }
            let names = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
            guard let first = names.first else { continue }
            if seen.insert(first.lowercased()).inserted { classes.append(names) } else { duplicates.append((n + 1, first)) }
        }
        guard !classes.isEmpty else { throw EvalError("\(file): no labels (one class name per line, a|b for synonyms)") }
        // With one class every image scores 100 %: an answer that only looks right.
        guard classes.count >= 2 else { throw EvalError("\(file): only one class (\(classes[0][0])); zero-shot needs at least two") }
    }
}
