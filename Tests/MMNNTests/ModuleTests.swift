import MMNN
import Testing

@Suite struct ModuleTests {
    @Test func keyPathsFollowOpenCLIPNames() {
        let keys = Transformer(width: 8, layers: 2, heads: 2).namedParameters().map(\.key)
        #expect(keys.count == 24)
        #expect(
            keys.prefix(12) == [
                "resblocks.0.ln_1.weight", "resblocks.0.ln_1.bias",
                "resblocks.0.attn.in_proj_weight", "resblocks.0.attn.in_proj_bias",
                "resblocks.0.attn.out_proj.weight", "resblocks.0.attn.out_proj.bias",
                "resblocks.0.ln_2.weight", "resblocks.0.ln_2.bias",
                "resblocks.0.mlp.c_fc.weight", "resblocks.0.mlp.c_fc.bias",
                "resblocks.0.mlp.c_proj.weight", "resblocks.0.mlp.c_proj.bias"
            ])
        #expect(keys.last == "resblocks.1.mlp.c_proj.bias")
    }

    @Test func strictLoadNamesEveryProblem() {
        let model = MLP(width: 4, hidden: 8, activation: .gelu)
        var state = model.stateDict().mapValues { $0.copy() }
        state["c_fc.weight"] = .zeros([8, 5])
        state.removeValue(forKey: "c_proj.bias")
        state["c_fc.extra"] = .zeros([2])
        #expect {
            try model.load(state)
        } throws: { error in
            let e = error as! LoadError
            return e.problems == [
                .shapeMismatch(key: "c_fc.weight", expected: [8, 4], found: [8, 5]),
                .missing(key: "c_proj.bias", expected: [4]),
                .unexpected(key: "c_fc.extra", shape: [2])
            ] && e.description.contains("c_fc.weight")
        }
    }

    @Test func loadCopiesValuesIntoExistingParameters() throws {
        let a = Linear(3, 2), b = Linear(3, 2)
        var g = SeededGenerator(seed: 7)
        a.resetParameters(using: &g)
        let weight = b.weight
        try b.load(a.stateDict())
        #expect(b.weight === weight)
        #expect(b.weight.scalars == a.weight.scalars && b.bias!.scalars == a.bias!.scalars)
    }

    @Test func weightDecayRuleExemptsGainsBiasesEmbeddingsAndScalars() {
        let rule = WeightDecayRule.standard
        let matrix = Tensor.zeros([4, 4]), vector = Tensor.zeros([4]), scalar = Tensor.zeros([])
        #expect(rule.decays("transformer.resblocks.0.attn.in_proj_weight", matrix))
        #expect(!rule.decays("transformer.resblocks.0.attn.in_proj_bias", vector))
        #expect(!rule.decays("visual.ln_post.weight", vector))
        #expect(!rule.decays("ln_final.weight", vector))
        #expect(!rule.decays("logit_scale", scalar))
        #expect(!rule.decays("token_embedding.weight", matrix))
        #expect(WeightDecayRule.openCLIP.decays("token_embedding.weight", matrix))
        #expect(!rule.decays("visual.class_embedding", vector))
    }

    @Test func scheduleWarmsUpThenDecays() {
        let s = LearningRateSchedule(base: 1, warmup: 4, total: 14)
        #expect(s.rate(at: 0) == 0.25 && s.rate(at: 3) == 1)
        #expect(s.rate(at: 4) == 1)
        #expect(abs(s.rate(at: 9) - 0.5) < 1e-6)
        #expect(s.rate(at: 14) < 1e-6)
        #expect(LearningRateSchedule(base: 2, warmup: 1, total: 9, shape: .constant).rate(at: 5) == 2)
    }

    @Test func clippingScalesToTheMaximumNorm() {
        let a = Tensor.zeros([2], requiresGrad: true), b = Tensor.zeros([1], requiresGrad: true)
        a.grad = Tensor(shape: [2], values: [3, 0])
        b.grad = Tensor(shape: [1], values: [4])
        let norm = clipGradientNorm([a, b], maxNorm: 1)
        #expect(abs(norm - 5) < 1e-6)
        #expect(abs(a.grad!.scalars[0] - 0.6) < 1e-6 && abs(b.grad!.scalars[0] - 0.8) < 1e-6)
    }
}
