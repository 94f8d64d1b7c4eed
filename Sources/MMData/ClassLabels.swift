import Foundation
import MMFoundation

/// Class names read from a labels file: one class per line, `a|b` gives synonyms of one class.
public struct ClassLabels: Equatable {
    /// Per class, its names; the first is the one reported.
    public var classes: [[String]]
    /// Lines whose class (first name, case-insensitive) already appeared, dropped.
    public var duplicates: [(line: Int, name: String)]

    public static func == (a: ClassLabels, b: ClassLabels) -> Bool {
        a.classes == b.classes && a.duplicates.map(\.line) == b.duplicates.map(\.line)
    }

    /// Reads a regular UTF-8 file of at most 64 MiB.
    public init(contentsOf path: String) throws {
        let text: String?
        do { text = try ReadableFile(path, maxSize: 64 << 20).readText() } catch let error as FileError {
            throw DataError.badLabels(path: path, reason: "cannot read the labels file (\(error.reason))")
        }
        guard let text else { throw DataError.badLabels(path: path, reason: "not UTF-8") }
        try self.init(parsing: Data(text.utf8), file: path)
    }

    /// Blank lines are ignored; an empty result or non-UTF-8 text is an error.
    public init(parsing data: Data, file: String) throws {
        guard let text = String(data: data, encoding: .utf8) else { throw DataError.badLabels(path: file, reason: "not UTF-8") }
        var seen = Set<String>()
        classes = []
        duplicates = []
        for (n, line) in Text.lines(text).enumerated() {
            // A control character (a NUL, say) means this is not a text file of names.
            if let bad = line.unicodeScalars.first(where: { $0.properties.generalCategory == .control && $0 != "\t" }) {
                throw DataError.controlCharacterInLabels(path: file, line: n + 1, value: bad.value)
            }
            let names = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
            guard let first = names.first else { continue }
            if seen.insert(first.lowercased()).inserted { classes.append(names) } else { duplicates.append((n + 1, first)) }
        }
        guard !classes.isEmpty else { throw DataError.badLabels(path: file, reason: "no labels (one class name per line, a|b for synonyms)") }
        // With one class every image scores 100 %: an answer that only looks right.
        guard classes.count >= 2 else { throw DataError.oneClass(path: file, name: classes[0][0]) }
    }

    /// The class of each sample of `manifest`: its label matched, ignoring case, against every
    /// name of every class (the first class naming it wins).
    public func classIndices(of manifest: Manifest) throws -> [Int] {
        var index: [String: Int] = [:]
        for (i, names) in classes.enumerated() { for n in names where index[n.lowercased()] == nil { index[n.lowercased()] = i } }
        guard let labels = manifest.labels else { throw DataError.noLabelColumn(path: manifest.path) }
        return try labels.enumerated().map { row, label in
            guard let i = index[label.lowercased()] else {
                throw DataError.unknownLabel(path: manifest.path, line: manifest.lines[row], label: label)
            }
            return i
        }
    }
}
