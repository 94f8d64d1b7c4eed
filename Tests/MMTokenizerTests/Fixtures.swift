import Foundation
import MMTokenizer
import Testing

/// One caption of tools/make_tokenizer_fixtures.py, with what open_clip made of it.
struct GoldenCaption: Decodable {
    let category: String
    let text: String
    let clean: String
    let ids: [Int32]
    let row: [Int32]
    let decoded: String
}

struct GoldenContextRow: Decodable {
    let text: String
    let context_length: Int
    let row: [Int32]
}

struct GoldenDecode: Decodable {
    let ids: [Int32]
    let text: String
}

struct CaptionFixture: Decodable {
    let captions: [GoldenCaption]
    let context_lengths: [GoldenContextRow]
    let decodes: [GoldenDecode]
    let dropped_mojibake: Int
}

struct EntityFixture: Decodable {
    struct Case: Decodable { let text: String; let clean: String }
    let cases: [Case]
}

struct ClassFixture: Decodable {
    let L: [[UInt32]]
    let N: [[UInt32]]
    let s: [[UInt32]]
    let isspace: [[UInt32]]
}

enum Fixtures {
    static func url(_ name: String) throws -> URL {
        let dir = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "Fixtures resource missing")
        return dir.appendingPathComponent(name)
    }

    static func load<T: Decodable>(_ name: String, as: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(contentsOf: url(name)))
    }

    static let captions: CaptionFixture = try! load("captions.json", as: CaptionFixture.self)

    /// The package checkout (for files outside the test bundle: vocab/, datasets/).
    static let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static let tokenizer: Tokenizer = try! Tokenizer()
}

/// Shows a caption with its invisible characters spelled out, for failure messages.
func visible(_ s: String) -> String {
    s.unicodeScalars.map { u in
        u.value < 0x20 || (0x7F...0xA0).contains(u.value) || u.properties.generalCategory == .format
            ? "\\u{\(String(u.value, radix: 16))}" : String(u)
    }.joined()
}

/// Reports at most `limit` mismatches, then how many there were in all.
struct Mismatches {
    let label: String
    var count = 0
    let limit = 8

    mutating func check<T: Equatable>(_ actual: T, _ expected: T, _ what: @autoclosure () -> String) {
        guard actual != expected else { return }
        count += 1
        if count <= limit {
            Issue.record("\(label): \(what())\n  ours:     \(actual)\n  open_clip: \(expected)")
        }
    }

    func finish(of total: Int) {
        #expect(count == 0, "\(label): \(count) of \(total) differ")
    }
}
