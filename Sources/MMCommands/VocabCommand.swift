import ArgumentParser
import Foundation
import MMTokenizer

/// `mm vocab`: BPE vocabularies.
struct VocabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vocab",
        abstract: "Train and inspect byte-level BPE vocabularies.",
        subcommands: [Train.self, Info.self]
    )

    /// `mm vocab train captions.txt --size N -o dir`
    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Learn a BPE vocabulary from captions, with CLIP's cleaning and splitting.",
            discussion: """
                Writes merges.txt and vocab.json into the output directory; load it with \
                `--vocab <dir>` (mm tokenize, training) — ids are laid out as CLIP's: 512 byte \
                symbols, one per merge, then start and end of text. Stops early, and says why, \
                when the captions run out of pairs occurring --min-frequency times.

                  mm vocab train captions.txt --size 4096 -o vocab/mine/
                """
        )

        @Argument(help: "Caption file, one caption a line (UTF-8).")
        var captions: String

        @Option(name: .long, help: "Vocabulary size to reach (at least 514: 512 byte symbols + 2 special tokens).")
        var size: Int

        @Option(name: .shortAndLong, help: "Output directory (created if missing).")
        var output: String

        @Option(name: .long, help: "Stop when the most frequent pair occurs fewer times than this.")
        var minFrequency: Int = 2

        @Option(name: .long, help: "Threads for reading and splitting the captions.")
        var threads: Int?

        @Flag(name: .long, help: "Replace invalid UTF-8 with U+FFFD instead of stopping at it.")
        var replaceInvalid = false

        func validate() throws {
            guard size >= VocabularyTrainer.baseSize else {
                throw ValidationError("--size must be at least \(VocabularyTrainer.baseSize) (512 byte symbols + 2 special tokens), got \(size)")
            }
            try OptionBounds.check(size, "--size", OptionBounds.vocabularySize)
            try OptionBounds.check(minFrequency, "--min-frequency", 1...Int.max)
            try OptionBounds.check(threads, "--threads", OptionBounds.threads)
        }

        func run() throws {
            let lines = try withCaptionAdvice { try readCaptions(captions, replaceInvalid: replaceInvalid) }
            let trained = try VocabularyTrainer.train(captions: lines, size: size, minFrequency: minFrequency, threads: threads)
            try trained.write(to: output)
            if let reason = trained.stoppedEarly {
                print("stopped at size \(trained.size) of \(size) requested (\(trained.merges.count) merges): \(reason)")
            } else {
                print("trained size \(trained.size) (\(trained.merges.count) merges) from \(lines.count) captions")
            }
            print("wrote \(output)/merges.txt and \(output)/vocab.json")
        }
    }

    /// `mm vocab info [path]`
    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a vocabulary's size, merges and special token ids (default: the bundled CLIP vocabulary).")

        @Argument(help: "Merges file or vocabulary directory.")
        var path: String?

        func run() throws {
            let v = try path.map(Vocabulary.load) ?? Vocabulary.clip()
            print("\(v.source): \(v.count) tokens, \(v.mergeCount) merges, start \(v.startOfText), end \(v.endOfText)")
        }
    }
}
