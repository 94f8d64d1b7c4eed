import ArgumentParser

/// The bounds of numeric options, checked in one place: a zero, negative or absurd value is a
/// usage error naming the option, never a trap, a runaway allocation or a hang. Each command
/// group's `validate()` checks its options against these.
enum OptionBounds {
    static let batchSize = 1...4096
    static let workers = 1...1024
    static let threads = 1...1024
    static let k = 1...100_000
    static let contextLength = 1...65536
    static let imageSize = 1...8192
    static let passes = 1...1000
    static let vocabularySize = 1...(1 << 22)

    static func check(_ value: Int, _ name: String, _ range: ClosedRange<Int>) throws {
        guard range.contains(value) else {
            throw ValidationError("\(name) must be in \(range.lowerBound)…\(range.upperBound), not \(value)")
        }
    }

    static func check(_ value: Int?, _ name: String, _ range: ClosedRange<Int>) throws {
        if let value { try check(value, name, range) }
    }
}
