import Foundation
import MMTensor
import Testing

/// Reads a golden fixture written by tools/make_tensor_fixtures.py (PyTorch/open_clip).
public func loadFixture(_ name: String, bundle: Bundle) throws -> Safetensors {
    let dir = try #require(bundle.url(forResource: "Fixtures", withExtension: nil), "Fixtures resource missing")
    return try Safetensors(contentsOf: dir.appendingPathComponent(name))
}

/// Compares `actual` with the reference: |a − r| ≤ atol + rtol·|r| everywhere. On failure,
/// reports the label, the largest difference and the first values of both.
public func expectClose(
    _ label: String, _ actual: Tensor?, _ reference: Tensor?, atol: Float = 1e-5, rtol: Float = 1e-4,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let reference else {
        Issue.record("\(label): reference missing", sourceLocation: sourceLocation)
        return
    }
    guard let actual else {
        Issue.record("\(label): no value computed (expected \(reference.shape))", sourceLocation: sourceLocation)
        return
    }
    guard actual.shape == reference.shape else {
        Issue.record("\(label): shape \(actual.shape) ≠ reference \(reference.shape)", sourceLocation: sourceLocation)
        return
    }
    var worst: Float = 0, worstExcess: Float = -1
    for i in 0..<actual.count {
        let d = abs(actual.data[i] - reference.data[i])
        worst = max(worst, d)
        worstExcess = max(worstExcess, d - (atol + rtol * abs(reference.data[i])))
    }
    if worstExcess > 0 || worst.isNaN {
        let a = actual.scalars.prefix(6).map { String(format: "%.6g", $0) }.joined(separator: ", ")
        let r = reference.scalars.prefix(6).map { String(format: "%.6g", $0) }.joined(separator: ", ")
        Issue.record(
            "\(label): max |diff| \(worst) beyond atol \(atol) + rtol \(rtol); ours [\(a)…] vs reference [\(r)…]",
            sourceLocation: sourceLocation)
    }
}

/// Per-case attributes recorded by the fixture script.
public struct Attributes {
    public let values: [String: Any]
    public init(_ fixture: Safetensors, _ name: String) {
        let json = fixture.metadata["\(name).attrs"] ?? "{}"
        values = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any] ?? [:]
    }
    public func bool(_ k: String) -> Bool { values[k] as? Bool ?? false }
    public func int(_ k: String) -> Int { (values[k] as? NSNumber)?.intValue ?? 0 }
    public func float(_ k: String) -> Float { (values[k] as? NSNumber)?.floatValue ?? 0 }
    public func ints(_ k: String) -> [Int] { (values[k] as? [NSNumber])?.map(\.intValue) ?? [] }
}
