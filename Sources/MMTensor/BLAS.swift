import CBLAS

/// OpenBLAS runs single-threaded: mm splits products across its own `Threads.count` workers,
/// so the two pools never oversubscribe the cores. Set once, before the first product.
private let blasSingleThreaded: Void = openblas_set_num_threads(1)

/// C[M×N] = alpha·op(A)·op(B) + beta·C, row-major with explicit leading dimensions, so that
/// attention can address one head inside a packed [L, 3W] buffer without copying.
/// Large products are split by rows of C across `Threads.count` single-threaded BLAS calls.
/// Public for products over memory that is not a tensor's (e.g. an ANN index's lists).
@inline(__always)
public func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
    parallel: Bool = true
) {
    guard m > 0, n > 0 else { return }
    if k == 0 {
        // BLAS leaves C untouched for k = 0; honour beta ourselves.
        for i in 0..<m { for j in 0..<n { c[i * ldc + j] *= beta } }
        return
    }
    _ = blasSingleThreaded
    func call(_ rows: Range<Int>) {
        let aRow = transA ? a + rows.lowerBound : a + rows.lowerBound * lda
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(rows.count), Int32(n), Int32(k), alpha, aRow, Int32(lda), b, Int32(ldb),
            beta, c + rows.lowerBound * ldc, Int32(ldc))
    }
    // Below ~2 MFLOP a second thread costs more than it saves.
    if parallel && Threads.count > 1 && m >= 2 * 16 && m * n * k >= 1 << 20 {
        parallelFor(m, grain: 16, call)
    } else {
        call(0..<m)
    }
}

/// The inner product of `n` floats at `x` and `y` (BLAS, this thread): for scoring scattered rows
/// in place, where gathering them for sgemm would copy each one twice more.
@inline(__always)
public func sdot(_ n: Int, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>) -> Float {
    _ = blasSingleThreaded
    return cblas_sdot(Int32(n), x, 1, y, 1)
}
