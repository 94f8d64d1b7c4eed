// Types MMEval's API is written in (CLIPModel, Tensor, RetrievalMetrics, PairLoader,
// ClassLabels, …) come with it, so `import MMEval` alone is enough for a script.
@_exported import MMCLIP
@_exported import MMData
