/// Bad input to zero-shot classification or evaluation: one line naming the file and what to do.
public struct EvalError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
