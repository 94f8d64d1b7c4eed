import Foundation
import MMFoundation

/// A small text file (templates, labels): a regular UTF-8 file of at most 64 MiB.
func readTextFile(_ path: String, what: String) throws -> String {
    let text: String?
    do { text = try ReadableFile(path, maxSize: 64 << 20).readText() } catch let error as FileError {
        throw EvalError.unreadable(file: path, what: what, reason: error.reason)
    }
    guard let text else { throw EvalError.notUTF8(file: path) }
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
                throw EvalError.missingTemplates(name: name)
            }
            return try parse(text: try readTextFile(path, what: "templates file"), file: path)
        default:
            return try parse(text: try readTextFile(name, what: "templates file"), file: name)
        }
    }

    /// One template per non-blank line; each must contain `{}`.
    public static func parse(_ data: Data, file: String) throws -> [String] {
        guard let text = String(data: data, encoding: .utf8) else { throw EvalError.notUTF8(file: file) }
        return try parse(text: text, file: file)
    }

    /// One template per non-blank line (LF, CRLF or CR); each must contain `{}`.
    public static func parse(text: String, file: String) throws -> [String] {
        var templates: [String] = []
        for (n, line) in Text.lines(text).enumerated() {
            let t = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if t.isEmpty { continue }
            guard t.contains("{}") else { throw EvalError.templateWithoutSlot(file: file, line: n + 1, template: t) }
            templates.append(t)
        }
        guard !templates.isEmpty else { throw EvalError.noTemplates(file: file) }
        return templates
    }
}
