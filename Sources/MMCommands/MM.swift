import ArgumentParser
import Foundation
import MMFoundation

/// The `mm` command: train, evaluate and use CLIP-style image–text models on the CPU.
public struct MM: ParsableCommand {
    public static let version = "0.1.0"

    public static let configuration = CommandConfiguration(
        commandName: "mm",
        abstract: "CLIP-style image–text alignment on the CPU: train, zero-shot classify, retrieve.",
        discussion: """
            Models, checkpoints (safetensors), tokenizer and preprocessing are interchangeable \
            with open_clip. Run `mm help <subcommand>` for details on each command.
            """,
        version: version,
        subcommands: [
            // Subcommands register here, one line each.
            PreprocessCommand.self,
            TokenizeCommand.self,
            VocabCommand.self,
            TrainCommand.self,
            EmbedCommand.self,
            ConvertCommand.self,
            ZeroShotCommand.self,
            EvalCommand.self,
            IndexCommand.self,
            SearchCommand.self,
            ServeCommand.self
        ]
    )

    public init() {}

    /// Runs the command line; an error is printed as one line with its hint (`withHint`). First
    /// checks that the kernels' threads can be created: Dispatch's pool retries a refused thread
    /// forever, so a thread limit (`ulimit -u`) would hang the first parallel kernel instead of failing.
    public static func main() {
        do {
            try Threads.checkAvailable(Threads.count)
        } catch {
            warn("mm: \(error)")
            Foundation.exit(1)
        }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: withHint(error))
        }
    }
}
