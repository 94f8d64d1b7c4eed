import Foundation
import MMCLIP
import MMData

extension Trainer {
    /// The gradient (into `grad`) and value of the plain contrastive objective over all `micro`
    /// batches on one tape, micro-batch j encoded as the j-th of the current step (its dropout
    /// and kept patches): the reference accumulation must equal (for tests).
    public func oneTapeGradientsForTesting(_ micro: [PairBatch]) -> Float {
        optimizer.zeroGradients()
        let tape = Tape()
        let l = tape.record { () -> Tensor in
            let f = micro.enumerated().map { objective.encode($1, step: position.step, micro: $0) }
            return objective.contrastive(
                image: .concatenate(f.map(\.image), axis: 0), text: .concatenate(f.map(\.text), axis: 0),
                keys: objective.keys(micro), detachTemperature: false)
        }
        tape.backward(l)
        return l.item()
    }
}
