/// SIMD building blocks for the kernels: 8-lane float vectors (one AVX register), loads and
/// stores that handle a ragged tail, and vectorised exp / erf / sigmoid.
public typealias Vec = SIMD8<Float>

@inline(__always)
func load(_ p: UnsafePointer<Float>, _ i: Int, _ n: Int) -> Vec {
    if i + 8 <= n { return UnsafeRawPointer(p + i).loadUnaligned(as: Vec.self) }
    var v = Vec(repeating: 0)
    for l in 0..<(n - i) { v[l] = p[i + l] }
    return v
}

@inline(__always)
func store(_ v: Vec, _ p: UnsafeMutablePointer<Float>, _ i: Int, _ n: Int) {
    if i + 8 <= n { UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: Vec.self); return }
    for l in 0..<(n - i) { p[i + l] = v[l] }
}

@inline(__always)
func horizontalSum(_ v: Vec) -> Float { v.sum() }

/// e^x, relative error ≈ 2e-7 on the float range; saturates to 0 / +inf outside it.
/// Only lane-wise arithmetic and bit casts, so that it compiles to straight AVX code (the generic
/// SIMD conversions and rounding of the standard library do not).
@inline(__always)
func exp(_ x: Vec) -> Vec {
    var x = x.replacing(with: -87.3, where: x .< -87.3)
    x = x.replacing(with: 88.7, where: x .> 88.7)
    // n = round(x / ln 2) by adding 1.5·2²³, which leaves n in the low mantissa bits.
    let magic = Vec(repeating: 0x1.8p23)
    let shifted = x * 1.442_695_04 + magic
    let n = shifted - magic
    // Cody–Waite reduction: r = x − n·ln2 in two parts for accuracy.
    var r = x - n * 0.693_145_75
    r = r - n * 1.428_606_8e-6
    // Taylor polynomial of e^r to degree 6 on |r| ≤ ln2/2.
    var p = Vec(repeating: 1.0 / 720)
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    // 2ⁿ: n sits in the low bits of `shifted` (offset by the magic's mantissa); move it to the exponent.
    let bits = (unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    return p * unsafeBitCast(bits, to: Vec.self)
}

/// 1 / (1 + e^(−x)).
@inline(__always)
func sigmoid(_ x: Vec) -> Vec { 1 / (1 + exp(-x)) }

/// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7).
@inline(__always)
func erf(_ x: Vec) -> Vec {
    let a = x.replacing(with: -x, where: x .< 0)
    let y = 1 - erfcFactor(a) * exp(-a * a)
    return y.replacing(with: -y, where: x .< 0)
}

/// A&S 7.1.26's polynomial: erfc(a) ≈ erfcFactor(a) · e^(−a²) for a ≥ 0.
@inline(__always)
func erfcFactor(_ a: Vec) -> Vec {
    let t = 1 / (1 + 0.327_591_1 * a)
    var p = Vec(repeating: 1.061_405_429)
    p = p * t - 1.453_152_027
    p = p * t + 1.421_413_741
    p = p * t - 0.284_496_736
    p = p * t + 0.254_829_592
    return p * t
}

/// (Φ(x), φ(x)) of the standard normal, sharing one exponential: Φ by erf as above, whose
/// e^(−x²/2) is also φ's.
@inline(__always)
func normalCDFAndPDF(_ x: Vec) -> (cdf: Vec, pdf: Vec) {
    let a = x.replacing(with: -x, where: x .< 0) * 0.707_106_77
    let e = exp(-a * a)
    let half = 0.5 * erfcFactor(a) * e  // ½(1 − erf(|x|/√2)) = Φ(−|x|)
    return (half.replacing(with: 1 - half, where: x .>= 0), 0.398_942_28 * e)
}
