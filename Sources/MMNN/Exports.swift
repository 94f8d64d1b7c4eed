@_exported import MMTensor
