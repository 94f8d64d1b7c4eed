import Foundation

/// Training colour augmentation on 0…1 float planes (R, G, B), following torchvision's tensor
/// formulas: blends are clamped to 0…1, greyscale is 0.2989 R + 0.587 G + 0.114 B.
enum ColorOps {
    static func augment<G: RandomNumberGenerator>(
        _ planes: UnsafeMutablePointer<Float>, count: Int,
        _ augmentation: Augmentation, using rng: inout G
    ) {
        if let jitter = augmentation.colorJitter, Double.random(in: 0..<1, using: &rng) < jitter.probability {
            // torchvision draws the order first, then the four factors.
            var order = [0, 1, 2, 3]
            order.shuffle(using: &rng)
            func factor(_ amount: Double) -> Float? {
                amount > 0 ? Float(Double.random(in: max(0, 1 - amount)...(1 + amount), using: &rng)) : nil
            }
            let brightness = factor(jitter.brightness)
            let contrast = factor(jitter.contrast)
            let saturation = factor(jitter.saturation)
            let hue = jitter.hue > 0 ? Float(Double.random(in: -jitter.hue...jitter.hue, using: &rng)) : nil
            for op in order {
                switch op {
                case 0: if let f = brightness { blend(planes, count: count, factor: f) { _ in 0 } }
                case 1:
                    if let f = contrast {
                        var total: Float = 0
                        for i in 0..<count { total += gray(planes, i, count) }
                        let mean = total / Float(count)
                        blend(planes, count: count, factor: f) { _ in mean }
                    }
                case 2: if let f = saturation { blend(planes, count: count, factor: f) { gray(planes, $0, count) } }
                default: if let h = hue { shiftHue(planes, count: count, by: h) }
                }
            }
        }
        if augmentation.grayscaleProbability > 0 && Double.random(in: 0..<1, using: &rng) < augmentation.grayscaleProbability {
            for i in 0..<count {
                let g = gray(planes, i, count)
                planes[i] = g; planes[count + i] = g; planes[2 * count + i] = g
            }
        }
    }

    /// (x − mean)/std in place.
    static func normalise(_ planes: UnsafeMutablePointer<Float>, count: Int, _ n: Normalization) {
        for c in 0..<3 {
            let p = planes + c * count
            let m = n.mean[c], s = n.std[c]
            for i in 0..<count { p[i] = (p[i] - m) / s }
        }
    }

    @inline(__always)
    private static func gray(_ p: UnsafeMutablePointer<Float>, _ i: Int, _ count: Int) -> Float {
        0.2989 * p[i] + 0.587 * p[count + i] + 0.114 * p[2 * count + i]
    }

    /// x ← clamp(f·x + (1 − f)·other(pixel), 0, 1) on every channel.
    @inline(__always)
    private static func blend(_ p: UnsafeMutablePointer<Float>, count: Int, factor f: Float, other: (Int) -> Float) {
        for i in 0..<count {
            let o = (1 - f) * other(i)
            for c in 0..<3 { p[c * count + i] = min(max(f * p[c * count + i] + o, 0), 1) }
        }
    }

    /// RGB → HSV, hue += shift (mod 1), → RGB.
    private static func shiftHue(_ p: UnsafeMutablePointer<Float>, count: Int, by shift: Float) {
        for i in 0..<count {
            let r = p[i], g = p[count + i], b = p[2 * count + i]
            let maxc = max(r, g, b), minc = min(r, g, b)
            let v = maxc, delta = maxc - minc
            if delta == 0 { continue }  // grey: hue has no effect
            let s = delta / maxc
            var h: Float
            if maxc == r { h = (g - b) / delta } else if maxc == g { h = 2 + (b - r) / delta } else { h = 4 + (r - g) / delta }
            h = h / 6 + shift
            h -= h.rounded(.down)
            let h6 = h * 6
            let sector = Int(h6) % 6
            let f = h6 - Float(Int(h6))
            let pv = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f))
            let (nr, ng, nb): (Float, Float, Float)
            switch sector {
            case 0: (nr, ng, nb) = (v, t, pv)
            case 1: (nr, ng, nb) = (q, v, pv)
            case 2: (nr, ng, nb) = (pv, v, t)
            case 3: (nr, ng, nb) = (pv, q, v)
            case 4: (nr, ng, nb) = (t, pv, v)
            default: (nr, ng, nb) = (v, pv, q)
            }
            p[i] = nr; p[count + i] = ng; p[2 * count + i] = nb
        }
    }
}
