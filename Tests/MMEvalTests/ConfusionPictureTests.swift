import Foundation
import MMEval
import MMTensor
import Testing

@Suite struct ConfusionPictureTests {
    /// A report where sample i of class t is predicted as `predicted(t, i)`.
    func report(classes names: [String], perClass: Int, predicted: (Int, Int) -> Int) -> ZeroShotReport {
        let c = names.count
        var logits = [Float](), truth = [Int]()
        for t in 0..<c {
            for i in 0..<perClass {
                var row = [Float](repeating: 0, count: c)
                row[predicted(t, i)] = 1
                logits += row
                truth.append(t)
            }
        }
        return try! ZeroShotReport(logits: Tensor(shape: [truth.count, c], values: logits), truth: truth, classNames: names)
    }

    func count(_ needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }

    func attribute(_ name: String, of svg: String) -> Int? {
        guard let r = svg.range(of: " \(name)=\"") else { return nil }
        return Int(svg[r.upperBound...].prefix { $0 != "\"" })
    }

    @Test func sixtyFourClassesAreLabelledAndOnlyNonEmptyCellsDrawn() throws {
        let names = (0..<64).map { "class \($0)" }
        // Half of each class right, half on the next class: 128 non-empty cells.
        let r = report(classes: names, perClass: 4) { t, i in i < 2 ? t : (t + 1) % 64 }
        let svg = r.confusionSVG
        #expect(svg.hasPrefix("<svg ") && svg.hasSuffix("</svg>\n"))
        #expect(count("<rect class=\"cell\"", in: svg) == 128)
        #expect(count("<text class=\"row\"", in: svg) == 64 && count("<text class=\"column\"", in: svg) == 64)
        // 12 px cells: the matrix is 768 px square inside the picture.
        #expect(svg.contains("<rect class=\"frame\"") && svg.contains("width=\"768\" height=\"768\""))
        let width = try #require(attribute("width", of: svg)), height = try #require(attribute("height", of: svg))
        #expect(width > 768 && width < 1100 && height > 768 && height < 1100, "picture \(width)×\(height)")
        // A row split in halves: both cells at half the darkest shade.
        // Half of a row: shade 0.15 + 0.85 · 0.5 = 0.575 of the way from (235, 242, 250) to (8, 48, 107).
        #expect(count("fill=\"#6882a8\"", in: svg) == 128, "half-share colour")
    }

    @Test func classNamesAreEscaped() {
        let r = report(classes: ["a<b", "fish & chips", "\"quoted\"", "it's"], perClass: 1) { t, _ in t }
        let svg = r.confusionSVG
        #expect(svg.contains(">a&lt;b</text>") && svg.contains(">fish &amp; chips</text>"))
        #expect(svg.contains(">&quot;quoted&quot;</text>") && svg.contains(">it&apos;s</text>"))
        #expect(!svg.contains("a<b") && !svg.contains("& chips") && !svg.contains("\"quoted\""))
        #expect(count("<rect class=\"cell\"", in: svg) == 4)
    }

    @Test func aThousandClassesStaySmallWithoutNames() throws {
        let names = (0..<1000).map { "label number \($0)" }
        let r = report(classes: names, perClass: 2) { t, i in i == 0 ? t : (t * 7) % 1000 }
        let svg = r.confusionSVG
        #expect(!svg.contains("<text class=\"row\"") && !svg.contains("label number"))
        #expect(svg.contains("(class names in the CSV)"))
        var cells = Set<Int>()
        for t in 0..<1000 { cells.insert(t * 1000 + t); cells.insert(t * 1000 + (t * 7) % 1000) }
        #expect(count("<rect class=\"cell\"", in: svg) == cells.count)
        #expect(svg.contains("width=\"1000\" height=\"1000\""), "1 px cells")
        #expect(svg.utf8.count < 200_000, "\(svg.utf8.count) bytes")
    }
}
