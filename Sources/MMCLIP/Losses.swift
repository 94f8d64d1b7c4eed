import MMNN

/// Contrastive losses over a batch of paired, L2-normalised image and text embeddings.
public enum ContrastiveLoss {
    /// CLIP's symmetric InfoNCE: with logits = e^{scale} · I Tᵀ, the mean of the cross-entropy
    /// of each image against all texts and of each text against all images, the matching pair
    /// (the diagonal) being the target.
    public static func infoNCE(image: Tensor, text: Tensor, logitScale: Tensor) -> Tensor {
        let n = image.shape[0]
        precondition(image.shape == text.shape, "paired embeddings differ in shape: \(image.shape) vs \(text.shape)")
        let scale = logitScale.exp()
        let perImage = Tensor.matmul(image, text, transposeB: true) * scale
        let perText = Tensor.matmul(text, image, transposeB: true) * scale
        let diagonal = IntTensor(shape: [n], values: (0..<Int32(n)).map { $0 })
        return (perImage.crossEntropy(targets: diagonal) + perText.crossEntropy(targets: diagonal)).scaled(by: 0.5)
    }

    /// SigLIP's sigmoid loss: every pair is an independent binary decision,
    /// −Σᵢⱼ log σ(zᵢⱼ · (e^{scale} · Iᵢ·Tⱼ + bias)) / N with z = +1 on the diagonal and −1 elsewhere
    /// (open_clip's `SigLipLoss` on one device).
    public static func sigmoid(image: Tensor, text: Tensor, logitScale: Tensor, logitBias: Tensor) -> Tensor {
        let n = image.shape[0]
        precondition(image.shape == text.shape, "paired embeddings differ in shape: \(image.shape) vs \(text.shape)")
        let logits = Tensor.matmul(image, text, transposeB: true) * logitScale.exp() + logitBias
        var signs = [Float](repeating: -1, count: n * n)
        for i in 0..<n { signs[i * n + i] = 1 }
        return (logits * Tensor(shape: [n, n], values: signs)).logSigmoid().sum().scaled(by: -1 / Float(n))
    }
}
