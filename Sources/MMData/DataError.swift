import Foundation
import MMFoundation

/// Bad input to the data pipeline. Each description is one line that names the file (and line);
/// the command line adds what to do (which option to pass).
public enum DataError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The manifest could not be opened or read.
    case unreadable(path: String, reason: String)
    /// A malformed manifest line (1-based; a quoted CSV record is named by its first line).
    case badLine(path: String, line: Int, reason: String)
    /// The header (the first line) does not name a column that was asked for.
    case missingColumn(path: String, key: String, role: String, columns: [String])
    /// No lines with samples at all.
    case empty(path: String)
    /// Every sample line was bad and skipped.
    case noUsableSamples(path: String, skipped: Int)
    /// A training loader was given a manifest read without a caption column.
    case noCaptions(path: String)
    /// A global batch (batch size × world size) larger than the data: no full batch per epoch.
    case batchLargerThanData(batchSize: Int, samples: Int)
    /// A separator that cannot split a manifest.
    case invalidSeparator(String)
    /// A resume position outside the epoch.
    case badPosition(String)
    /// Too many images in a row failed to load, or too few load at all to fill a batch.
    case tooManyBadImages(count: Int, reason: String, last: String)

    /// A labels file (one class a line) that cannot be read or holds no class.
    case badLabels(path: String, reason: String)
    /// A control character in a labels file: not a text file of names (1-based line).
    case controlCharacterInLabels(path: String, line: Int, value: UInt32)
    /// A labels file with one class left (after duplicates): every image would score 100 %.
    case oneClass(path: String, name: String)
    /// A manifest read without the label column that is needed.
    case noLabelColumn(path: String)
    /// A manifest row whose label is not among the classes.
    case unknownLabel(path: String, line: Int, label: String)

    /// A shard file that cannot be opened.
    case unreadableShard(path: String, reason: String)
    /// A shard specification that names no usable local files.
    case badShardSpec(spec: String, reason: String)
    /// Named shards that do not exist.
    case missingShards([String])
    /// Fewer shards than data-parallel ranks (ranks read disjoint shards).
    case tooFewShards(shards: Int, ranks: Int)
    /// A rank's shards yield no usable samples at all.
    case noShardSamples(spec: String, rank: Int)

    /// A Parquet file that is unreadable, malformed, or uses what mm does not read.
    case badParquet(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason):
            return "\(path): cannot read manifest (\(reason))"
        case let .badLine(path, line, reason):
            return "\(path):\(line): \(reason)"
        case let .missingColumn(path, key, role, columns):
            // Quoted in short: a header that is really the whole file must not become the message.
            var list = columns.prefix(12).map { "'\(Text.excerpt($0[...], limit: 40))'" }.joined(separator: ", ")
            if columns.count > 12 { list += ", … (\(columns.count) in all)" }
            return "\(path):1: the header has no \(role) column '\(key)' (its columns: \(list))"
        case let .empty(path):
            return "\(path): the manifest has no samples (it needs lines of image path and caption)"
        case let .noUsableSamples(path, skipped):
            return "\(path): all \(skipped) sample lines are bad, nothing to load"
        case let .noCaptions(path):
            return "\(path): read without a caption column, but training needs captions"
        case let .batchLargerThanData(batchSize, samples):
            return "batch size \(batchSize) is larger than the \(samples) samples: no full batch per epoch"
        case let .invalidSeparator(separator):
            return "separator \(separator) must be one ASCII character other than a quote or line break"
        case let .badPosition(what):
            return "cannot resume the data loader: \(what)"
        case let .badLabels(path, reason):
            return "\(path): \(reason)"
        case let .controlCharacterInLabels(path, line, value):
            return "\(path):\(line): control character U+\(String(format: "%04X", value)) in a label; not a labels file"
        case let .oneClass(path, name):
            return "\(path): only one class (\(Text.excerpt(name[...]))); zero-shot needs at least two"
        case let .noLabelColumn(path):
            return "\(path): no label column"
        case let .unknownLabel(path, line, label):
            return "\(path):\(line): label '\(Text.excerpt(label[...]))' is not in the labels file"
        case let .unreadableShard(path, reason):
            return "\(path): cannot read shard (\(reason))"
        case let .badShardSpec(spec, reason):
            return "\(spec): \(reason)"
        case let .missingShards(paths):
            let list = paths.prefix(3).joined(separator: ", ") + (paths.count > 3 ? " and \(paths.count - 3) more" : "")
            return "\(paths.count) shard\(paths.count == 1 ? "" : "s") not found: \(list)"
        case let .tooFewShards(shards, ranks):
            return "\(shards) shard\(shards == 1 ? "" : "s") cannot be split over \(ranks) ranks (each rank reads its own shards)"
        case let .noShardSamples(spec, rank):
            return "\(spec): the shards of rank \(rank) hold no usable samples (members with a caption and an image)"
        case let .badParquet(path, reason):
            return "\(path): \(reason)"
        case let .tooManyBadImages(count, reason, last):
            return "\(count) images failed to load \(reason) (last: \(last)); check the image paths in the manifest"
        }
    }
}
