import Foundation
import MMEval

/// An index the server answers for, under a name: its rows, and the approximate index beside its
/// file when there is one.
public struct ServedIndex {
    public let name: String
    public let index: EmbeddingIndex
    public let approximate: ApproximateIndex?

    public init(name: String, index: EmbeddingIndex, approximate: ApproximateIndex? = nil) {
        self.name = name
        self.index = index
        self.approximate = approximate
    }

    /// Loads `path` (and its approximate index, if any).
    public static func load(name: String, path: String) throws -> ServedIndex {
        let index = try EmbeddingIndex.load(from: URL(fileURLWithPath: path))
        return ServedIndex(name: name, index: index, approximate: try ApproximateIndex.load(beside: index))
    }
}

/// Names and files of the indexes to serve: `name=path` arguments, a bare path (named after its
/// file), or clip-retrieval's `indices_paths.json` (`{"name": "path"}` or
/// `{"name": {"indice_folder": "path"}}`; relative paths are relative to the JSON file).
public enum IndexSpecs {
    public static func parse(argument: String) throws -> (name: String, path: String) {
        if let eq = argument.firstIndex(of: "="), !argument[..<eq].contains("/") {
            let name = String(argument[..<eq]), path = String(argument[argument.index(after: eq)...])
            guard isValidName(name), !path.isEmpty else {
                throw ServeSetupError("--index \(argument): expected NAME=PATH with NAME of letters, digits, '-', '_' or '.'")
            }
            return (name, path)
        }
        let name = URL(fileURLWithPath: argument).deletingPathExtension().lastPathComponent
        guard isValidName(name) else { throw ServeSetupError("\(argument): cannot name the index after this file; give NAME=PATH") }
        return (name, argument)
    }

    public static func parse(indicesFile path: String) throws -> [(name: String, path: String)] {
        let data: Data
        do { data = Data(try ReadableFile(path, maxSize: 1 << 20).readAll()) } catch let e as FileError {
            throw ServeSetupError("\(path): cannot read the indices file (\(e.reason))")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ServeSetupError("\(path): expected a JSON object {\"name\": \"index path\", …}")
        }
        guard !object.isEmpty else { throw ServeSetupError("\(path): names no index (expected {\"name\": \"index path\", …})") }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent()
        return try object.keys.sorted().map { name in
            guard isValidName(name) else { throw ServeSetupError("\(path): index name '\(name)' must be letters, digits, '-', '_' or '.'") }
            let value = object[name]
            let given = value as? String ?? ((value as? [String: Any])?["indice_folder"] as? String)
            guard let given, !given.isEmpty else {
                throw ServeSetupError("\(path): key \(name): expected a path or {\"indice_folder\": path}")
            }
            return (name, given.hasPrefix("/") ? given : folder.appendingPathComponent(given).path)
        }
    }

    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 100
            && name.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) && $0.isASCII || "-_.".unicodeScalars.contains($0) }
    }
}
