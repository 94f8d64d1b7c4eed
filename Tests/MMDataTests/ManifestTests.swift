import Foundation
import MMData
import MMFoundation
import MMImage
import Testing

@Suite struct ManifestTests {
    @Test func shapesTrainTSVWithHeader() throws {
        let m = try Manifest(path: Paths.shapes + "/train.tsv")
        #expect(m.count == 6016)
        #expect(m.columns == ["filepath", "title"])
        #expect(m.separator == "\t" && !m.quoting)
        #expect(m.images[0] == Paths.shapes + "/images/train/000000.jpg")
        #expect(m.captions?[0] == "a medium-sized green diamond against a plain khaki backdrop")
        #expect(m.captions?[3] == "A big star in purple on a navy background.")
        #expect(m.lines[0] == 2 && m.lines.last == 6017)
        #expect(m.labels.map(Array.init) == nil && m.badLines.isEmpty)
        #expect(m.images.allSatisfy { FileManager.default.fileExists(atPath: $0) })
    }

    /// The held-out split goes by image, is the same wherever the manifest lies and whatever the
    /// order of its lines, and holds out about the share asked for.
    @Test func heldOutSplitIsByImageAndStable() throws {
        let m = try Manifest(path: Paths.shapes + "/train.tsv")
        let (kept, heldOut) = m.split(heldOutShare: 0.1)
        #expect(kept.count + heldOut.count == m.count)
        #expect(abs(Double(heldOut.count) / Double(m.count) - 0.1) < 0.02)
        #expect(Set(kept.images).isDisjoint(with: Set(heldOut.images)))
        #expect(heldOut.captions?[0] == m.captions?[m.lines.firstIndex(of: heldOut.lines[0])!])
        // Two captions of one image, the lines reversed, the folder elsewhere: the same images held out.
        let rows = (2..<400).map { i in "images/train/\(String(format: "%06d", i / 2)).jpg\tcaption \(i)" }
        let a = try Manifest(parsing: Array(("filepath\ttitle\n" + rows.joined(separator: "\n")).utf8), path: "/a/train.tsv")
        let b = try Manifest(parsing: Array(("filepath\ttitle\n" + rows.reversed().joined(separator: "\n")).utf8), path: "/b/c/train.tsv")
        let names = { (m: Manifest) in Set(m.images.map { URL(fileURLWithPath: $0).lastPathComponent }) }
        let (ha, hb) = (a.split(heldOutShare: 0.2).heldOut, b.split(heldOutShare: 0.2).heldOut)
        #expect(names(ha) == names(hb) && ha.count == hb.count && ha.count % 2 == 0 && ha.count > 0)
        #expect(m.split(heldOutShare: 0).heldOut.count == 0)
    }

    @Test func evaluationManifestWithLabelsAndNoCaptions() throws {
        let path = Paths.shapes + "/test_labels.tsv"
        let m = try Manifest(path: path, options: .init(captionKey: nil, labelKey: "label"))
        #expect(m.count == 1024)
        #expect(m.captions.map(Array.init) == nil)
        #expect(m.labels.map { Array($0.prefix(3)) } == ["purple heart", "orange diamond", "red ring"])
        let classes = Set(try String(contentsOfFile: Paths.shapes + "/labels.txt", encoding: .utf8).split(separator: "\n").map(String.init))
        #expect(Set(m.labels!) == classes)

        // The same file with the default caption key names the missing column.
        #expect(throws: DataError.missingColumn(path: path, key: "title", role: "caption", columns: ["filepath", "label"])) {
            try Manifest(path: path)
        }
        let message = DataError.missingColumn(path: path, key: "title", role: "caption", columns: ["filepath", "label"]).description
        #expect(
            message.hasPrefix(path + ":1: ") && message.contains("'title'") && !message.contains("--"),
            "no command-line advice in the library: \(message)")
    }

    @Test func csvQuoting() throws {
        let dir = Paths.scratch("csv")
        let text = [
            "filepath,title",
            "a.jpg,plain caption",
            "\"b, c.jpg\",\"a caption, with a comma\"",
            "c.jpg,\"she said \"\"hi\"\"\"",
            "",
            "d.jpg,\"two",
            "lines, one field\"",
            "e.jpg,",
            "f.jpg,\"x\"\"y\"",
            "g.jpg,last without line break"
        ].joined(separator: "\n")
        for (name, body) in [("lf.csv", text), ("crlf.csv", text.replacingOccurrences(of: "\n", with: "\r\n"))] {
            let m = try Manifest(path: Paths.write(dir, name, body))
            #expect(m.separator == "," && m.quoting)
            #expect(m.images.map { String($0.dropFirst(dir.count + 1)) } == ["a.jpg", "b, c.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "g.jpg"])
            let newline = name == "lf.csv" ? "\n" : "\r\n"
            #expect(
                m.captions.map(Array.init) == [
                    "plain caption", "a caption, with a comma", "she said \"hi\"", "two\(newline)lines, one field",
                    "", "x\"y", "last without line break"
                ])
            #expect(m.lines == [2, 3, 4, 6, 8, 9, 10])
        }
    }

    @Test func csvQuotingErrors() throws {
        let dir = Paths.scratch("csv-bad")
        let unclosed = Paths.write(dir, "unclosed.csv", "filepath,title\na.jpg,ok\nb.jpg,\"never closed\nc.jpg,x\n")
        #expect(throws: DataError.badLine(path: unclosed, line: 3, reason: "quoted field opened on line 3 is never closed")) {
            try Manifest(path: unclosed)
        }
        let after = Paths.write(dir, "after.csv", "filepath,title\n\"a.jpg\"x,caption\nb.jpg,fine\n")
        let m = try Manifest(path: after, options: .init(skipBad: true))
        #expect(m.count == 1 && m.lines == [3])
        #expect(m.badLines.map(\.line) == [2] && m.badLines[0].reason.contains("after a closing quote"))
    }

    @Test func headerlessTSV() throws {
        let dir = Paths.scratch("headerless")
        let path = Paths.write(dir, "pairs.tsv", "x.jpg\ta cat\n/abs/y.jpg\ta \"quoted\" dog\n\nsub/z.png\t\n")
        let m = try Manifest(path: path)
        #expect(!m.hasHeader)
        #expect(Array(m.images) == [dir + "/x.jpg", "/abs/y.jpg", dir + "/sub/z.png"])
        #expect(m.captions.map(Array.init) == ["a cat", "a \"quoted\" dog", ""])
        #expect(m.lines == [1, 2, 4])

        // A header-less file has no label column to read.
        #expect(throws: DataError.missingColumn(path: path, key: "filepath", role: "image", columns: ["x.jpg", "a cat"])) {
            try Manifest(path: path, options: .init(labelKey: "label"))
        }
        // Three fields without a header are a bad line, not a caption with a tab.
        let three = Paths.write(dir, "three.tsv", "x.jpg\ta\tb\n")
        #expect(throws: DataError.badLine(path: three, line: 1, reason: "expected 2 fields (image path, caption) separated by tab, found 3")) {
            try Manifest(path: three)
        }
    }

    @Test func customKeysAndSeparator() throws {
        let dir = Paths.scratch("keys")
        let path = Paths.write(dir, "list.txt", "caption;id;url\nred circle;1;img/1.jpg\nblue star;2;/data/2.jpg\n")
        let m = try Manifest(path: path, options: .init(imageKey: "url", captionKey: "caption", labelKey: "id", separator: ";"))
        #expect(Array(m.images) == [dir + "/img/1.jpg", "/data/2.jpg"])
        #expect(m.captions.map(Array.init) == ["red circle", "blue star"])
        #expect(m.labels.map(Array.init) == ["1", "2"])

        // An explicit key that the header lacks is an error, never a header-less reading.
        #expect(throws: DataError.missingColumn(path: path, key: "path", role: "image", columns: ["caption", "id", "url"])) {
            try Manifest(path: path, options: .init(imageKey: "path", captionKey: "caption", separator: ";"))
        }
        // So is a header that names the caption column but not the image column.
        let noImage = Paths.write(dir, "noimage.tsv", "path\ttitle\na.jpg\tx\n")
        #expect(throws: DataError.missingColumn(path: noImage, key: "filepath", role: "image", columns: ["path", "title"])) {
            try Manifest(path: noImage)
        }
        #expect(throws: DataError.invalidSeparator("\"é\"")) { try Manifest(path: path, options: .init(separator: "é")) }
        #expect(throws: DataError.invalidSeparator("\"\\\"\"")) { try Manifest(path: path, options: .init(separator: "\"")) }
        let duplicate = Paths.write(dir, "dup.tsv", "filepath\ttitle\ttitle\na.jpg\tx\ty\n")
        #expect(throws: DataError.self) { try Manifest(path: duplicate) }
    }

    @Test func badLinesNameFileAndLine() throws {
        let path = Paths.shapes + "/bad.tsv"
        let error = #expect(throws: DataError.self) { try Manifest(path: path) }
        #expect(error == .badLine(path: path, line: 47, reason: "expected 2 fields (filepath, title) separated by tab, found 1"))
        #expect(error?.description.hasPrefix(path + ":47: expected 2 fields") == true)
        #expect(error?.description.contains("--") == false, "no command-line advice in the library")

        let m = try Manifest(path: path, options: .init(skipBad: true))
        #expect(m.count == 69)
        #expect(m.badLines.map(\.line) == [47, 57])
        #expect(m.badLines[1].reason == "caption is not valid UTF-8 (byte 0xFF at byte 15 of the field)")
        #expect(!m.lines.contains(47) && !m.lines.contains(57))
        #expect(m.lines.count == 69 && m.lines.first == 2 && m.lines.last == 72)
    }

    @Test func invalidUTF8AndEmptyPath() throws {
        let dir = Paths.scratch("utf8")
        var bytes = Array("filepath\ttitle\na.jpg\tcafé\nb.jpg\tcaf".utf8)
        bytes += [0xE9, 0x0A] + Array("\tno path\nc\u{FF}.jpg\tok\n".utf8)
        let path = Paths.write(dir, "latin1.tsv", bytes)
        #expect(throws: DataError.badLine(path: path, line: 3, reason: "caption is not valid UTF-8 (byte 0xE9 at byte 4 of the field)")) {
            try Manifest(path: path)
        }
        let m = try Manifest(path: path, options: .init(skipBad: true))
        #expect(m.captions.map(Array.init) == ["café", "ok"])
        #expect(
            m.badLines == [
                .init(line: 3, reason: "caption is not valid UTF-8 (byte 0xE9 at byte 4 of the field)"),
                .init(line: 4, reason: "empty image path")
            ])
        #expect(m.images[1].hasSuffix("/c\u{FF}.jpg"))
    }

    @Test func utf8ValidationAgreesWithTheStandardLibrary() throws {
        // Captions of random pieces, valid and invalid sequences of every kind (overlong
        // forms, surrogates, past U+10FFFF, truncated, stray continuation bytes): each caption
        // is kept exactly when Swift's own validator accepts it.
        var rng = SeededGenerator(seed: 3)
        let pieces: [[UInt8]] = [
            [0x61], [0x7F], [0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0xA0, 0x80], [0xE1, 0x80, 0x80], [0xED, 0x9F, 0xBF],
            [0xEE, 0x80, 0x80], [0xEF, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80], [0xF3, 0xBF, 0xBF, 0xBF], [0xF4, 0x8F, 0xBF, 0xBF],
            [0x80], [0xBF], [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x9F, 0xBF], [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF],
            [0xF0, 0x8F, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xFF], [0xE1, 0x80], [0xF1, 0x80, 0x80]
        ]
        var text = Array("filepath\ttitle\n".utf8)
        var expected: [String?] = []
        for _ in 0..<4000 {
            let caption = (0..<Int.random(in: 0...3, using: &rng)).flatMap { _ in
                // Mostly valid pieces, so that one invalid piece decides.
                Int.random(in: 0..<3, using: &rng) > 0 ? pieces[Int.random(in: 0..<12, using: &rng)] : pieces.randomElement(using: &rng)!
            }
            text += Array("a.jpg\t".utf8) + caption + [0x0A]
            expected.append(String(validating: caption, as: UTF8.self))
        }
        #expect(expected.filter { $0 == nil }.count > 400 && expected.filter { $0 != nil }.count > 2000)
        // Longer valid text with every sequence length, past the eight-byte ASCII steps.
        let long = "ascii run of more than eight bytes é ü € 𝄞 中文 and ascii again"
        text += Array("a.jpg\t\(long)\n".utf8)
        expected.append(long)
        let m = try Manifest(parsing: text, path: "random.tsv", options: .init(skipBad: true))
        #expect(Array(m.captions!) == expected.compactMap { $0 })
        #expect(m.badLines.map(\.line) == expected.indices.filter { expected[$0] == nil }.map { $0 + 2 })
    }

    @Test func emptyManifests() throws {
        let dir = Paths.scratch("empty")
        for (name, text) in [
            ("empty.tsv", ""), ("blank.tsv", "\n\n\r\n"), ("header.tsv", "filepath\ttitle\n"), ("header.csv", "filepath,title\r\n\r\n")
        ] {
            let path = Paths.write(dir, name, text)
            #expect(throws: DataError.empty(path: path)) { try Manifest(path: path) }
        }
        let allBad = Paths.write(dir, "allbad.tsv", "filepath\ttitle\nonly-one-field\n\tno path\n")
        #expect(throws: DataError.noUsableSamples(path: allBad, skipped: 2)) { try Manifest(path: allBad, options: .init(skipBad: true)) }
        let missing = dir + "/nowhere.tsv"
        #expect(throws: DataError.unreadable(path: missing, reason: "No such file or directory")) { try Manifest(path: missing) }
        #expect(throws: DataError.unreadable(path: dir, reason: "is a directory")) { try Manifest(path: dir) }
    }

    @Test func byteOrderMarkAndParsingFromMemory() throws {
        let m = try Manifest(parsing: [0xEF, 0xBB, 0xBF] + Array("filepath,title\nimg.jpg,a dog\n".utf8), path: "data/list.csv")
        #expect(m.columns == ["filepath", "title"])
        #expect(Array(m.images) == ["data/img.jpg"] && m.captions.map(Array.init) == ["a dog"])
        let bare = try Manifest(parsing: Array("img.jpg\ta dog".utf8), path: "list.tsv")
        #expect(Array(bare.images) == ["img.jpg"])
    }
}
