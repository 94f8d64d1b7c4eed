import ArgumentParser
import Dispatch
import Foundation
import MMFoundation
import MMTokenizer

/// `mm tokenize`: open_clip's token ids for a caption, or for every line of a caption file.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the CLIP token ids of a text (exactly open_clip's), or of each line of a file.",
        discussion: """
            Ids are one row of --context-length: 49406 (start), the BPE ids, 49407 (end), zeros; \
            text too long for the row is cut with the end token kept last.

              mm tokenize "a photo of a cat"
              mm tokenize "a photo of a cat" --verbose --context-length 16
              mm tokenize --file captions.txt --output ids.txt
              mm tokenize --file captions.txt --benchmark --threads 2
            """
    )

    @Argument(help: "The text to tokenize (omit with --file).")
    var text: String?

    @Option(name: .long, help: "A caption file, one caption a line (UTF-8).")
    var file: String?

    @Option(name: .long, help: "Ids per row.")
    var contextLength: Int = 77

    @Option(name: .long, help: "A vocabulary: merges file, or directory with vocab.json + merges.txt (default: the bundled CLIP vocabulary).")
    var vocab: String?

    @Flag(name: .long, help: "Print JSON: {\"text\", \"ids\"} per caption (one object a line with --file).")
    var json = false

    @Flag(name: .long, help: "Also print each token's string (and the cleaned text).")
    var verbose = false

    @Option(name: .long, help: "Where --file output goes (default: standard output).")
    var output: String?

    @Option(name: .long, help: "Threads for --file (default: MM_THREADS or the core count).")
    var threads: Int?

    @Flag(name: .long, help: "Replace invalid UTF-8 in --file with U+FFFD instead of stopping at it.")
    var replaceInvalid = false

    @Flag(
        name: .long,
        help: "With --file: time the tokenisation only (fresh caches each pass) and print captions per second and a checksum of the ids as JSON.")
    var benchmark = false

    @Option(name: .long, help: "With --benchmark: how many timed passes (the best is reported).")
    var passes: Int = 3

    @Flag(
        name: .long,
        help: "With --benchmark: keep one tokenizer (and its word caches) across passes, as in a long training run, instead of a fresh one per pass.")
    var warm = false

    func validate() throws {
        guard (text == nil) != (file == nil) else {
            throw ValidationError("give either a text or --file, not both or neither")
        }
        try OptionBounds.check(contextLength, "--context-length", OptionBounds.contextLength)
        try OptionBounds.check(threads, "--threads", OptionBounds.threads)
        try OptionBounds.check(passes, "--passes", OptionBounds.passes)
        if benchmark && file == nil { throw ValidationError("--benchmark needs --file") }
    }

    func run() throws {
        let vocabulary = try vocab.map(Vocabulary.load) ?? Vocabulary.clip()
        let tokenizer = Tokenizer(vocabulary: vocabulary, contextLength: contextLength)
        if let text = text {
            print(render(text, tokenizer.tokenize(text), tokenizer))
            return
        }
        let captions = try withCaptionAdvice { try readCaptions(file!, replaceInvalid: replaceInvalid) }
        if benchmark {
            try runBenchmark(captions, vocabulary)
            return
        }
        let rows = tokenizer.tokenize(captions, threads: threads)
        var out = ""
        for (i, caption) in captions.enumerated() {
            out += render(caption, Array(rows[(i * contextLength)..<((i + 1) * contextLength)]), tokenizer) + "\n"
        }
        if let path = output {
            do { try AtomicFile.write(out, to: path) } catch let error as FileError { throw CommandError(error.description) }
        } else {
            print(out, terminator: "")
        }
    }

    private func render(_ text: String, _ row: [Int32], _ tokenizer: Tokenizer) -> String {
        let used = row.firstIndex(of: tokenizer.vocabulary.endOfText).map { $0 + 1 } ?? row.count
        let tokens = row[..<used].map { tokenizer.vocabulary.tokens[Int($0)] }
        if json {
            var object = "{\"text\": \(quoted(text)), \"ids\": [\(row.map(String.init).joined(separator: ", "))]"
            if verbose {
                object += ", \"clean\": \(quoted(Tokenizer.clean(text)))"
                object += ", \"tokens\": [\(tokens.map(quoted).joined(separator: ", "))]"
            }
            return object + "}"
        }
        let ids = row.map(String.init).joined(separator: " ")
        guard verbose else { return ids }
        var lines = ["clean: \(Tokenizer.clean(text))", "ids: \(ids)"]
        for (id, token) in zip(row, tokens) { lines.append("  \(id)\t\(token)") }
        return lines.joined(separator: "\n")
    }

    private func quoted(_ s: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }

    /// Times `tokenize` alone on a fresh tokenizer (cold word cache) per pass, as a reference
    /// tokenizer would see the captions once; the checksum lets a benchmark script compare the ids.
    private func runBenchmark(_ captions: [String], _ vocabulary: Vocabulary) throws {
        let threadCount = threads ?? Tokenizer.defaultThreads
        var best = Double.infinity
        var rows: [Int32] = []
        let kept = Tokenizer(vocabulary: vocabulary, contextLength: contextLength)
        for _ in 0..<passes {
            let tokenizer = warm ? kept : Tokenizer(vocabulary: vocabulary, contextLength: contextLength)
            let start = DispatchTime.now().uptimeNanoseconds
            rows = tokenizer.tokenize(captions, threads: threadCount)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        // Σ id · (column + 1) · (row mod 997 + 1): catches swapped ids and swapped rows.
        var checksum: Int64 = 0
        let length = contextLength
        for (k, id) in rows.enumerated() {
            checksum &+= Int64(id) * Int64(k % length + 1) * Int64((k / length) % 997 + 1)
        }
        print(
            "{\"captions\": \(captions.count), \"threads\": \(threadCount), \"warm\": \(warm), \"seconds\": \(best), "
                + "\"captions_per_second\": \(Double(captions.count) / best), \"checksum\": \(checksum)}")
    }
}

/// A caption file's invalid UTF-8 with what the command line can do about it.
func withCaptionAdvice<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as TokenizerError {
        guard case .invalidUTF8 = error else { throw error }
        throw CommandError("\(error); re-encode the file as UTF-8 or pass --replace-invalid")
    }
}
