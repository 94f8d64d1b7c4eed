import Foundation

/// Reverse-mode autodiff by a tape: while `record` runs, every op whose inputs need gradients
/// appends its backward step; `backward` replays them in reverse. Without a recording tape
/// (inference) ops record nothing and keep no intermediate buffers alive.
public final class Tape {
    struct Entry {
        let output: Tensor
        let backward: () -> Void
    }

    private var entries: [Entry] = []

    public init() {}

    /// Runs `body` with this tape recording on the current thread.
    public func record<R>(_ body: () throws -> R) rethrows -> R {
        let previous = Tape.current
        Tape.current = self
        defer { Tape.current = previous }
        return try body()
    }

    /// Back-propagates from `root`, seeded with `seed` (default: ones, for a scalar loss),
    /// accumulating into the `grad` of every leaf that requires it. Empties the tape.
    public func backward(_ root: Tensor, seed: Tensor? = nil) {
        precondition(root.requiresGrad, "backward from a tensor that was not recorded with gradients")
        let g = root.gradient()
        if let seed {
            precondition(seed.shape == root.shape, "seed shape \(seed.shape) ≠ root shape \(root.shape)")
            g.data.update(from: seed.data, count: g.count)
        } else {
            g.data.update(repeating: 1, count: g.count)
        }
        while let entry = entries.popLast() {
            if entry.output.grad != nil { entry.backward() }
            // Intermediate gradients are consumed once their op has propagated them.
            if !entry.output.isLeaf { entry.output.grad = nil }
        }
    }

    // MARK: - Recording, for ops

    /// The tape recording on this thread, if any.
    public internal(set) static var current: Tape? {
        get { pthread_getspecific(key).map { Unmanaged<Tape>.fromOpaque($0).takeUnretainedValue() } }
        set {
            if let old = pthread_getspecific(key) { Unmanaged<Tape>.fromOpaque(old).release() }
            pthread_setspecific(key, newValue.map { Unmanaged.passRetained($0).toOpaque() })
        }
    }

    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()

    /// The recording tape when gradients are wanted for an op over `inputs`, else nil.
    @inline(__always)
    static func recording(_ inputs: Tensor...) -> Tape? {
        guard let tape = current, inputs.contains(where: { $0.requiresGrad }) else { return nil }
        return tape
    }

    /// Marks `output` as differentiable and appends its backward step.
    func append(_ output: Tensor, backward: @escaping () -> Void) {
        output.requiresGrad = true
        entries.append(Entry(output: output, backward: backward))
    }
}

/// Runs `body` with no tape recording (inference), even inside a `Tape.record`.
public func withoutGradients<R>(_ body: () throws -> R) rethrows -> R {
    let previous = Tape.current
    Tape.current = nil
    defer { Tape.current = previous }
    return try body()
}
