@_exported import MMTensor

/// A layer or model. Its parameters are found by walking its stored properties, so their key
/// paths fall out of its structure: a `Tensor` property is a parameter, a `Module` property a
/// child, an array of modules children `0`, `1`, …; `@Key("ln_1")` gives a property the
/// checkpoint name open_clip uses when the Swift name differs, and `@Key("")` puts a child's
/// parameters at its parent's level. `@Buffer("running_mean")` marks state that is saved and
/// loaded with the parameters but never trained (PyTorch's buffers).
public protocol Module: AnyObject {}

/// Stores a parameter or submodule under an explicit checkpoint name.
@propertyWrapper
public struct Key<Value> {
    private var value: Value?
    public let name: String

    /// Declared as `@Key("ln_1") var norm1: LayerNorm` and assigned in the owner's init.
    public init(_ name: String) { self.name = name }

    public var wrappedValue: Value {
        get {
            guard let value else { preconditionFailure("parameter '\(name)' read before it was assigned") }
            return value
        }
        set { value = newValue }
    }
}

/// A tensor saved and loaded under `name` with the parameters, never trained: no gradient, left
/// out of `setRequiresGrad` and `parameterCount` (a batch norm's running statistics).
@propertyWrapper
public struct Buffer {
    private var value: Tensor?
    public let name: String

    public init(_ name: String) { self.name = name }

    public var wrappedValue: Tensor {
        get {
            guard let value else { preconditionFailure("buffer '\(name)' read before it was assigned") }
            return value
        }
        set { value = newValue }
    }
}

private protocol KeyedProperty {
    var keyName: String { get }
    var keyedValue: Any { get }
    var isBuffer: Bool { get }
}

extension Key: KeyedProperty {
    var keyName: String { name }
    var keyedValue: Any { wrappedValue }
    var isBuffer: Bool { false }
}

extension Buffer: KeyedProperty {
    var keyName: String { name }
    var keyedValue: Any { wrappedValue }
    var isBuffer: Bool { true }
}

public struct LoadError: Error, CustomStringConvertible {
    public enum Problem: Sendable, Equatable {
        case missing(key: String, expected: [Int])
        case unexpected(key: String, shape: [Int])
        case shapeMismatch(key: String, expected: [Int], found: [Int])
    }

    public let problems: [Problem]

    public init(problems: [Problem]) { self.problems = problems }

    public var description: String {
        let lines = problems.prefix(5).map { p -> String in
            switch p {
            case let .missing(k, e): "missing key '\(k)' (model expects \(e))"
            case let .unexpected(k, s): "unexpected key '\(k)' \(s) not in the model"
            case let .shapeMismatch(k, e, f): "shape mismatch for '\(k)': model expects \(e), checkpoint has \(f)"
            }
        }
        let more = problems.count > 5 ? "; and \(problems.count - 5) more" : ""
        return lines.joined(separator: "; ") + more
    }
}

extension Module {
    /// Every parameter under its dotted key path, in declaration order, with the buffers (what a
    /// checkpoint holds) unless `includingBuffers` is false.
    public func namedParameters(includingBuffers: Bool = true) -> [(key: String, tensor: Tensor)] {
        var out: [(String, Tensor)] = []
        collect(self, prefix: "", buffers: includingBuffers, into: &out)
        return out
    }

    public var parameters: [Tensor] { namedParameters().map(\.tensor) }

    /// Trainable parameters only, as PyTorch counts them.
    public var parameterCount: Int { namedParameters(includingBuffers: false).reduce(0) { $0 + $1.tensor.count } }

    /// The parameters by key (sharing storage with the model).
    public func stateDict() -> [String: Tensor] {
        Dictionary(namedParameters().map { ($0.key, $0.tensor) }, uniquingKeysWith: { a, _ in a })
    }

    /// Copies `state` into the parameters. Strict by default: every model key must be present,
    /// no other key may be, and shapes must agree; all problems are reported at once.
    public func load(_ state: [String: Tensor], strict: Bool = true) throws {
        let own = namedParameters()
        var problems: [LoadError.Problem] = []
        for (key, p) in own {
            guard let t = state[key] else {
                if strict { problems.append(.missing(key: key, expected: p.shape)) }
                continue
            }
            if t.shape != p.shape { problems.append(.shapeMismatch(key: key, expected: p.shape, found: t.shape)) }
        }
        if strict {
            let known = Set(own.map(\.key))
            for key in state.keys.sorted() where !known.contains(key) {
                problems.append(.unexpected(key: key, shape: state[key]!.shape))
            }
        }
        guard problems.isEmpty else { throw LoadError(problems: problems) }
        for (key, p) in own {
            if let t = state[key] { p.data.update(from: t.data, count: p.count) }
        }
    }

    /// Sets every parameter's `requiresGrad` (e.g. false to freeze a tower).
    public func setRequiresGrad(_ value: Bool) {
        for (_, p) in namedParameters(includingBuffers: false) { p.requiresGrad = value }
    }
}

private func collect(_ value: Any, prefix: String, buffers: Bool, into out: inout [(String, Tensor)]) {
    var mirror: Mirror? = Mirror(reflecting: value)
    var chain: [Mirror] = []
    while let m = mirror { chain.append(m); mirror = m.superclassMirror }
    for m in chain.reversed() {
        for child in m.children {
            guard let label = child.label else { continue }
            if let keyed = child.value as? KeyedProperty {
                if keyed.isBuffer && !buffers { continue }
                if keyed.keyName.isEmpty, let inlined = keyed.keyedValue as? Module {
                    collect(inlined, prefix: prefix, buffers: buffers, into: &out)  // `@Key("")`: children at this level
                } else {
                    visit(keyed.keyedValue, key: prefix + keyed.keyName, buffers: buffers, into: &out)
                }
            } else {
                visit(child.value, key: prefix + label, buffers: buffers, into: &out)
            }
        }
    }
}

private func visit(_ value: Any, key: String, buffers: Bool, into out: inout [(String, Tensor)]) {
    switch value {
    case let t as Tensor: out.append((key, t))
    case let m as Module: collect(m, prefix: key + ".", buffers: buffers, into: &out)
    case let list as [Module]:
        for (i, m) in list.enumerated() { collect(m, prefix: "\(key).\(i).", buffers: buffers, into: &out) }
    default: break  // configuration (ints, flags, optionals that are nil) is not a parameter
    }
}
