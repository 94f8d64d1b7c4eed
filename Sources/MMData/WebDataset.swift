import Foundation

/// Which members of a WebDataset sample hold the caption and the image.
public struct WebDatasetKeys: Codable, Sendable, Equatable {
    /// The caption member's extension (open_clip: `txt`).
    public var text: String
    /// When set, the caption is this string field of the `json` member instead.
    public var jsonText: String?
    /// Image extensions in order of preference (open_clip: `jpg;png;jpeg;webp`).
    public var images: [String]

    public static let defaultImages = ["jpg", "jpeg", "png", "webp"]

    public init(text: String = "txt", jsonText: String? = nil, images: [String] = WebDatasetKeys.defaultImages) {
        self.text = text.lowercased()
        self.jsonText = jsonText
        self.images = images.map { $0.lowercased() }
    }

    /// The member extension the caption comes from.
    var captionExtension: String { jsonText == nil ? text : "json" }
}

/// One sample of a shard as its headers describe it: the members that will give its caption
/// and image. Reading their bytes is a separate step, so a shard can be counted or skipped
/// through without reading any data.
struct ShardSample {
    /// webdataset's `__key__`: the member path up to the first dot of its base name.
    var key: String
    /// Its index among the shard's usable samples.
    var ordinal: Int
    var image: TarMember
    /// Which of the image extensions it is (`jpg`, `webp`…).
    var imageExtension: String
    var caption: TarMember
}

/// A sample left out while a shard was read, and why.
public struct ShardSkip: Sendable, Equatable, CustomStringConvertible {
    public var shard: String
    public var key: String
    public var reason: String
    public var description: String { "\(shard): \(key.isEmpty ? "" : "sample \(key): ")\(reason)" }
}

/// Groups a shard's members into samples the way webdataset's `group_by_keys` does, and keeps
/// those with a caption and an image as open_clip's `filter_no_caption_or_no_image` does:
///
/// - a member name `dir/base.ext…` has key `dir/base` (up to the first dot of the base name) and
///   suffix `ext…` (lower-cased); names without such a dot are ignored, as are webdataset's
///   `__…__` metadata members at the top level;
/// - a new sample starts when the key changes, or when a suffix repeats within one key;
/// - a sample without the caption member or any of the image extensions is skipped and counted;
///   a member cut off by the end of the file is dropped first (then its sample is judged on what
///   is left), and a truncated or damaged archive ends the shard, counted once.
final class ShardReader {
    let reader: TarReader
    let keys: WebDatasetKeys
    private(set) var skips: [ShardSkip] = []
    private var ordinal = 0
    private var pending: TarMember?
    private var pendingKey = "", pendingSuffix = ""
    private var finished = false

    init(path: String, keys: WebDatasetKeys) throws {
        reader = try TarReader(path: path)
        self.keys = keys
    }

    /// The next usable sample, or nil at the end of the shard.
    func next() -> ShardSample? {
        while !finished {
            var members: [String: TarMember] = [:]
            var key: String?
            if let member = pending {
                key = pendingKey
                members[pendingSuffix] = member
                pending = nil
            }
            while let member = reader.next() {
                guard let (k, suffix) = Self.split(member.name) else { continue }
                if key == nil { key = k }
                if k != key || members[suffix] != nil {
                    pending = member
                    pendingKey = k
                    pendingSuffix = suffix
                    break
                }
                members[suffix] = member
            }
            if pending == nil {
                finished = true
                switch reader.end {
                case .truncated(let at)?:
                    skips.append(
                        ShardSkip(
                            shard: reader.path, key: "",
                            reason: "file ends inside the member at byte \(at) (truncated shard); the rest of the shard is skipped"))
                case .badHeader(let at, let reason)?:
                    skips.append(
                        ShardSkip(shard: reader.path, key: "", reason: "bad tar header at byte \(at) (\(reason)); the rest of the shard is skipped"))
                default: break
                }
            }
            guard let key else { continue }
            let imageExtension = keys.images.first { members[$0] != nil }
            let image = imageExtension.flatMap { members[$0] }
            let caption = members[keys.captionExtension]
            guard let image, let imageExtension, let caption else {
                let missing = [
                    caption == nil ? "caption (.\(keys.captionExtension))" : nil,
                    image == nil ? "image (.\(keys.images.joined(separator: "/.")))" : nil
                ].compactMap { $0 }
                skips.append(ShardSkip(shard: reader.path, key: key, reason: "no \(missing.joined(separator: " and "))"))
                continue
            }
            defer { ordinal += 1 }
            return ShardSample(key: key, ordinal: ordinal, image: image, imageExtension: imageExtension, caption: caption)
        }
        return nil
    }

    /// `(key, suffix)` of a member name as webdataset's `base_plus_ext`, or nil when it has none.
    static func split(_ name: String) -> (key: String, suffix: String)? {
        let utf8 = Array(name.utf8)
        let baseStart = (utf8.lastIndex(of: UInt8(ascii: "/")) ?? -1) + 1
        guard let dot = utf8[baseStart...].firstIndex(of: UInt8(ascii: ".")), dot > baseStart else { return nil }
        if baseStart == 0 && name.hasPrefix("__") && name.hasSuffix("__") { return nil }
        let key = String(decoding: utf8[..<dot], as: UTF8.self)
        let suffix = String(decoding: utf8[(dot + 1)...], as: UTF8.self).lowercased()
        return (key, suffix)
    }
}

/// Turns a sample's caption member bytes into its caption: UTF-8 text, or a string field of JSON.
enum CaptionReader {
    static func caption(_ bytes: [UInt8], keys: WebDatasetKeys) -> Result<String, CaptionError> {
        guard let field = keys.jsonText else {
            guard let text = String(validating: bytes, as: UTF8.self) else { return .failure(.notUTF8) }
            return .success(text)
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            return .failure(.badJSON)
        }
        guard let value = object[field] as? String else { return .failure(.noField(field)) }
        return .success(value)
    }

    enum CaptionError: Error, CustomStringConvertible {
        case notUTF8, badJSON, noField(String)
        var description: String {
            switch self {
            case .notUTF8: return "caption is not valid UTF-8"
            case .badJSON: return "the .json member is not a JSON object"
            case .noField(let f): return "the .json member has no string field '\(f)'"
            }
        }
    }
}
