import Foundation
@testable import EdgeshipModelCore

/// A release record shaped as register_model writes it (tests/functions/test_swift_contract.py
/// checks the field list against the real function's output).
func releaseRecord(version: String = "20261124t120305123456z-3f9a1c", channel: String = "stable",
                   minApp: String = "1.0.0", size: Int64 = 4, sha256: String = String(repeating: "a", count: 64),
                   bucket: String = "proj-edgeship-models") -> [String: Any] {
    let prefix = "gs://\(bucket)/models/detector/\(version)/"
    let file: [String: Any] = ["path": "model.tflite", "size": NSNumber(value: size), "sha256": sha256,
                               "quantization": "full_int8", "uri": prefix + "model.tflite"]
    func output(_ index: Int) -> [String: Any] { ["index": NSNumber(value: index), "name": "StatefulPartitionedCall:\(index)"] }
    return [
        "channel": channel, "version": version, "model": "detector",
        "created_at": "2026-11-24T12:03:05.123456Z", "min_app_version": minApp,
        "bucket": bucket, "prefix": prefix,
        "model_file": file,
        "files": [file.merging(["format": "tflite"]) { $1 }],
        "input": ["name": "x", "shape": [1, 160, 160, 3].map { NSNumber(value: $0) }, "dtype": "uint8",
                  "scale": NSNumber(value: 0.0078125), "zero_point": NSNumber(value: 128),
                  "normalization": "raw RGB 0..255"],
        "outputs": ["boxes": output(0), "classes": output(1), "count": output(2), "scores": output(3)],
        "labels": ["circle", "square"], "variant": "full_int8", "parent_version": NSNull(),
        "manifest_sha256": String(repeating: "b", count: 64),
        "registered_at": Date(timeIntervalSince1970: 1_795_000_000),
    ]
}

func candidate(_ record: [String: Any]) -> ReleaseCandidate {
    ReleaseCandidate(documentID: "\(record["channel"]!)-\(record["version"]!)", record: record)
}
