import Foundation

// Ops of the self-supervised objectives: ReLU (projection heads), seeded dropout (SimCSE's
// noise) and the in-place exponential moving average of momentum encoders.

extension Tensor {
    /// max(x, 0) elementwise.
    public func relu() -> Tensor {
        let out = Tensor.result(shape)
        let x = data, y = out.data
        parallelFor(count, grain: 1 << 15) { r in
            var i = r.lowerBound
            while i < r.upperBound {
                let v = load(x, i, r.upperBound)
                store(v.replacing(with: 0, where: v .< 0), y, i, r.upperBound)
                i += 8
            }
        }
        if let tape = Tape.recording(self) {
            tape.append(out) {
                let dy = out.grad!.data, dx = self.gradient().data
                parallelFor(self.count, grain: 1 << 15) { r in
                    var i = r.lowerBound
                    while i < r.upperBound {
                        let g = load(dy, i, r.upperBound).replacing(with: 0, where: load(x, i, r.upperBound) .<= 0)
                        store(load(dx, i, r.upperBound) + g, dx, i, r.upperBound)
                        i += 8
                    }
                }
            }
        }
        return out
    }

    /// Inverted dropout: each element is zeroed with probability `rate` and the survivors are
    /// scaled by 1/(1 − rate). The mask is a pure function of (`seed`, element index), so a
    /// recomputation with the same seed (gradient accumulation, resume) drops the same elements,
    /// whatever the thread count. With `samples`, the first axis holds those samples (ids in a
    /// larger batch) and an element's draw depends on (seed, its sample's id, its index within
    /// the sample): a sample gets the same mask whichever part of the batch it is computed in
    /// (data-parallel ranks) and however long the batch's rows are.
    public func dropout(rate: Float, seed: UInt64, samples: [Int]? = nil) -> Tensor {
        precondition(rate >= 0 && rate < 1, "dropout rate \(rate) outside [0, 1)")
        if rate == 0 { return self }
        let keep = Tensor.result(shape)  // 0 or 1/(1−rate) per element
        let scale = 1 / (1 - rate)
        // An element survives when its 24-bit uniform draw is at or above rate·2²⁴.
        let threshold = UInt64((Double(rate) * 16_777_216).rounded())
        let mask = keep.data
        if let samples {
            precondition(!samples.isEmpty && count % samples.count == 0, "\(samples.count) samples in a tensor of \(shape)")
            let perSample = count / samples.count
            parallelFor(samples.count, grain: max(1, (1 << 14) / max(perSample, 1))) { r in
                for b in r {
                    let sampleSeed = dropoutDraw(seed, samples[b]) &* 0xD1B5_4A32_D192_ED03 ^ seed
                    for j in 0..<perSample { mask[b * perSample + j] = dropoutDraw(sampleSeed, j) >= threshold ? scale : 0 }
                }
            }
        } else {
            parallelFor(count, grain: 1 << 14) { r in
                for i in r {
                    mask[i] = dropoutDraw(seed, i) >= threshold ? scale : 0
                }
            }
        }
        return self * keep
    }

    /// self ← m · self + (1 − m) · source, in place and outside the tape: the momentum
    /// (exponential moving average) update θₖ ← m θₖ + (1 − m) θ_q of MoCo and BYOL.
    public func moveAverage(toward source: Tensor, momentum m: Float) {
        precondition(shape == source.shape, "momentum update between shapes \(shape) and \(source.shape)")
        let y = data, x = source.data, n = count
        parallelFor(n, grain: 1 << 15) { r in
            var i = r.lowerBound
            while i < r.upperBound {
                let mixed = load(y, i, r.upperBound) * m + load(x, i, r.upperBound) * (1 - m)
                store(mixed, y, i, r.upperBound)
                i += 8
            }
        }
    }
}

/// The top 24 bits of SplitMix64 of (seed, index): one independent uniform draw per element.
@inline(__always)
func dropoutDraw(_ seed: UInt64, _ index: Int) -> UInt64 {
    SeededGenerator.finalize(seed &+ UInt64(truncatingIfNeeded: index) &* SeededGenerator.increment) >> 40
}
