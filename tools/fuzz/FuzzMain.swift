// The entry point of every harness (copied in as main.swift): SwiftPM makes an executable's
// top-level code its `main`, so instead of libFuzzer's own main this hands the command line to
// libFuzzer's driver with the harness's `fuzzOne`.
import Foundation

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

private let empty = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOne(data ?? UnsafePointer(empty), size) })
