import Foundation

/// A row-major, contiguous float32 tensor, and a node of the autodiff graph when it is recorded
/// on a `Tape`.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let storage: TensorStorage
    /// Whether gradients flow to this tensor when it is used on a recording `Tape`.
    public var requiresGrad: Bool
    /// The accumulated gradient, same shape; nil until `Tape.backward` sends something here.
    public var grad: Tensor?
    /// Created by the user (parameters, inputs) rather than by an op; leaves keep their gradient.
    let isLeaf: Bool

    init(shape: [Int], storage: TensorStorage, requiresGrad: Bool, isLeaf: Bool) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(shape.reduce(1, *) == storage.count, "shape \(shape) does not fit \(storage.count) elements")
        self.shape = shape
        self.storage = storage
        self.requiresGrad = requiresGrad
        self.isLeaf = isLeaf
    }

    /// A tensor over an existing buffer (no copy).
    public convenience init(shape: [Int], storage: TensorStorage, requiresGrad: Bool = false) {
        self.init(shape: shape, storage: storage, requiresGrad: requiresGrad, isLeaf: true)
    }

    /// A tensor holding a copy of `values`, laid out row-major.
    public convenience init(shape: [Int], values: [Float], requiresGrad: Bool = false) {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)")
        let s = TensorStorage(count: values.count, zeroed: false)
        values.withUnsafeBufferPointer { s.base.update(from: $0.baseAddress!, count: values.count) }
        self.init(shape: shape, storage: s, requiresGrad: requiresGrad, isLeaf: true)
    }

    public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        Tensor(shape: shape, storage: TensorStorage(count: shape.reduce(1, *), zeroed: true), requiresGrad: requiresGrad, isLeaf: true)
    }

    public static func filled(_ shape: [Int], with value: Float) -> Tensor {
        let t = Tensor.zeros(shape)
        t.storage.base.update(repeating: value, count: t.count)
        return t
    }

    public static func scalar(_ value: Float, requiresGrad: Bool = false) -> Tensor {
        Tensor(shape: [], values: [value], requiresGrad: requiresGrad)
    }

    /// An op's output: storage not initialised, not a leaf.
    static func result(_ shape: [Int], zeroed: Bool = false) -> Tensor {
        Tensor(shape: shape, storage: TensorStorage(count: shape.reduce(1, *), zeroed: zeroed), requiresGrad: false, isLeaf: false)
    }

    public var count: Int { storage.count }
    public var rank: Int { shape.count }
    @inlinable public var data: UnsafeMutablePointer<Float> { storage.base }

    /// A copy of the elements, row-major.
    public var scalars: [Float] { Array(storage.buffer) }

    /// The single element of a one-element tensor.
    public func item() -> Float {
        precondition(count == 1, "item() on a tensor of shape \(shape)")
        return data[0]
    }

    /// A detached copy that records nothing and owns its own storage.
    public func copy(requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(shape: shape, storage: TensorStorage(count: count, zeroed: false), requiresGrad: requiresGrad, isLeaf: true)
        t.data.update(from: data, count: count)
        return t
    }

    /// The same storage, cut off from the graph.
    public func detached() -> Tensor {
        Tensor(shape: shape, storage: storage, requiresGrad: false, isLeaf: true)
    }

    /// The gradient buffer, created zeroed on first use; backward kernels accumulate into it.
    func gradient() -> Tensor {
        if let g = grad { return g }
        let g = Tensor.zeros(shape)
        grad = g
        return g
    }

    /// The gradient buffer for a backward kernel that writes every element of it: when there is
    /// no gradient yet it is created uninitialised and `accumulate` is false, so the kernel
    /// overwrites instead of adding onto a zero fill.
    func gradientForWriting() -> (data: UnsafeMutablePointer<Float>, accumulate: Bool) {
        if let g = grad { return (g.data, true) }
        let g = Tensor.result(shape)
        grad = g
        return (g.data, false)
    }

    /// Resolves a possibly negative axis against this tensor's rank.
    func axis(_ a: Int) -> Int {
        let r = a < 0 ? a + rank : a
        precondition(r >= 0 && r < rank, "axis \(a) out of range for shape \(shape)")
        return r
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = scalars.prefix(8).map { String(format: "%.5g", $0) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(head)\(count > 8 ? ", …" : "")])"
    }
}

/// Integer ids (tokens, class labels, row indices), row-major.
public struct IntTensor: Sendable, Equatable {
    public let shape: [Int]
    public var values: [Int32]

    public init(shape: [Int], values: [Int32]) {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) needs \(shape.reduce(1, *)) ids, got \(values.count)")
        self.shape = shape
        self.values = values
    }

    public var count: Int { values.count }
}
