// Types MMEval's API is written in (CLIPModel, Tensor, RetrievalMetrics, …) come with it, so
// `import MMEval` alone is enough for a script.
@_exported import MMCLIP
