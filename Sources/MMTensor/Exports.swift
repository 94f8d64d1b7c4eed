// The base types (Threads, SeededGenerator, files, text) come with MMTensor, so code written
// against MMTensor before they moved down keeps compiling.
@_exported import MMFoundation
