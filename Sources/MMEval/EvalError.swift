import MMFoundation

/// Bad input to zero-shot classification, evaluation or the embedding index: typed cases that
/// name the file (and line or field). Descriptions give no command-line advice; `mm` adds it.
public enum EvalError: Error, CustomStringConvertible, Equatable {
    /// A file that cannot be read (`what`: "index", "templates file").
    case unreadable(file: String, what: String, reason: String)
    /// A file that cannot be written.
    case unwritable(file: String, reason: String)
    /// A text file that is not UTF-8.
    case notUTF8(file: String)
    /// A templates-file line without `{}` for the class name (1-based line).
    case templateWithoutSlot(file: String, line: Int, template: String)
    /// A templates file with no template.
    case noTemplates(file: String)
    /// Bundled templates this build should ship are missing.
    case missingTemplates(name: String)
    /// A file that is not a readable mm index; `reason` names the part at fault.
    case badIndex(file: String, reason: String)
    /// An index with no rows to build an approximate index from.
    case emptyIndex(file: String)
    /// An index that was never saved (approximate indexes are built from saved ones).
    case unsavedIndex
    /// An index built by another model, or holding rows of another dimension.
    case modelMismatch(file: String, reason: String)
    /// An approximate index missing its description or not matching its index file.
    case staleApproximateIndex(file: String, reason: String)
    /// faiss refused an operation (`reason` says which).
    case faiss(file: String?, reason: String)
    /// A vocabulary with more tokens than the model's text tower embeds.
    case vocabularyTooLarge(vocabulary: String, tokens: Int, towerTokens: Int)
    /// A query image that cannot be read.
    case unreadableQuery(reason: String)
    /// A clip-retrieval output (embeddings, metadata, faiss index) that cannot be imported.
    case badClipRetrieval(file: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(file, what, reason): return "\(file): cannot read the \(what) (\(reason))"
        case let .unwritable(file, reason): return "\(file): cannot write it (\(reason))"
        case let .notUTF8(file): return "\(file): not UTF-8"
        case let .templateWithoutSlot(file, line, template):
            return "\(file):\(line): template '\(Text.excerpt(template[...]))' has no {} for the class name"
        case let .noTemplates(file): return "\(file): no templates (one per line, {} marks the class name)"
        case let .missingTemplates(name): return "the bundled '\(name)' templates are missing from this build"
        case let .badIndex(file, reason), let .modelMismatch(file, reason), let .staleApproximateIndex(file, reason),
            let .badClipRetrieval(file, reason):
            return "\(file): \(reason)"
        case let .emptyIndex(file): return "\(file): no rows to index"
        case .unsavedIndex: return "an approximate index is built from a saved index file"
        case let .faiss(file, reason): return (file.map { "\($0): " } ?? "") + "faiss " + reason
        case let .vocabularyTooLarge(vocabulary, tokens, towerTokens):
            return "vocabulary \(vocabulary) has \(tokens) tokens but the model's text tower has \(towerTokens)"
        case let .unreadableQuery(reason): return "cannot read the query image: \(reason)"
        }
    }
}
