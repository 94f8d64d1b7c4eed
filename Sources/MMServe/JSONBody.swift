import Foundation

/// A request body parsed as a JSON object, whatever its Content-Type (clip-retrieval's front
/// posts without one), with typed, bounded accessors: every wrong type or out-of-range value is a
/// 400 naming the field. `null` counts as absent (clip-retrieval's client sends nulls).
struct JSONBody {
    let fields: [String: Any]

    init(_ data: [UInt8]) throws {
        guard !data.isEmpty else { throw ServeError.badRequest("empty body: expected a JSON object") }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: Data(data), options: [.fragmentsAllowed]) } catch {
            throw ServeError.badRequest("body is not valid JSON")
        }
        guard let fields = object as? [String: Any] else { throw ServeError.badRequest("body must be a JSON object") }
        self.fields = fields
    }

    private func value(_ key: String) -> Any? {
        guard let v = fields[key], !(v is NSNull) else { return nil }
        return v
    }

    func has(_ key: String) -> Bool { value(key) != nil }

    func string(_ key: String, maxLength: Int = 100_000) throws -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v as? String else { throw ServeError.badRequest("\(key): expected a string") }
        guard s.utf8.count <= maxLength else { throw ServeError.badRequest("\(key): longer than \(maxLength) bytes") }
        return s
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard let n = v as? NSNumber, !isBool(n), let d = Double(exactly: n.doubleValue), d == d.rounded(), abs(d) < 1e15 else {
            throw ServeError.badRequest("\(key): expected an integer")
        }
        let i = Int(d)
        guard range.contains(i) else { throw ServeError.badRequest("\(key): \(i) is outside \(range.lowerBound)…\(range.upperBound)") }
        return i
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard let n = v as? NSNumber, isBool(n) else { throw ServeError.badRequest("\(key): expected true or false") }
        return n.boolValue
    }

    func strings(_ key: String, maxCount: Int, maxLength: Int = 10_000) throws -> [String]? {
        guard let v = value(key) else { return nil }
        guard let list = v as? [Any], let strings = list as? [String] else { throw ServeError.badRequest("\(key): expected an array of strings") }
        guard strings.count <= maxCount else { throw ServeError.badRequest("\(key): more than \(maxCount) items") }
        if let long = strings.firstIndex(where: { $0.utf8.count > maxLength }) {
            throw ServeError.badRequest("\(key)[\(long)]: longer than \(maxLength) bytes")
        }
        return strings
    }

    func ints(_ key: String, maxCount: Int) throws -> [Int]? {
        guard let v = value(key) else { return nil }
        guard let list = v as? [Any] else { throw ServeError.badRequest("\(key): expected an array of integers") }
        guard list.count <= maxCount else { throw ServeError.badRequest("\(key): more than \(maxCount) items") }
        return try list.map { item in
            guard let n = item as? NSNumber, !isBool(n), let d = Double(exactly: n.doubleValue), d == d.rounded(), abs(d) < 1e15 else {
                throw ServeError.badRequest("\(key): expected an array of integers")
            }
            return Int(d)
        }
    }

    /// An array of exactly `count` finite numbers.
    func floats(_ key: String, count: Int) throws -> [Float]? {
        guard let v = value(key) else { return nil }
        // clip-retrieval's client sends one vector; a [[…]] of one row is accepted too.
        let row = (v as? [Any]).flatMap { $0.count == 1 ? $0[0] as? [Any] : nil } ?? v as? [Any]
        guard let list = row else { throw ServeError.badRequest("\(key): expected an array of numbers") }
        guard list.count == count else { throw ServeError.badRequest("\(key): \(list.count) numbers, the model's embeddings have \(count)") }
        return try list.map { item in
            guard let n = item as? NSNumber, !isBool(n), n.doubleValue.isFinite else {
                throw ServeError.badRequest("\(key): expected finite numbers")
            }
            return n.floatValue
        }
    }

    /// JSON's true/false arrive as NSNumbers too; theirs is the only "c" (char) type JSON yields.
    private func isBool(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }
}

/// JSON text of a value made of dictionaries, arrays, strings and numbers (keys sorted).
func jsonBytes(_ object: Any) throws -> [UInt8] {
    Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed]))
}
