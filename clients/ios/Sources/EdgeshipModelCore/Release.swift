import Foundation

/// A release record (`models/{model}/releases/{channel}-{version}`), decoded and checked.
/// Codable so that the store can keep it next to the installed file (release.json).
public struct Release: Codable, Hashable, Sendable {
    public struct ModelFile: Codable, Hashable, Sendable {
        /// File name inside the version folder, e.g. "model.tflite".
        public let path: String
        public let size: Int64
        /// Lowercase hex SHA-256 of the file.
        public let sha256: String
        /// gs://bucket/models/{model}/{version}/{path}
        public let uri: String
        public let quantization: String?
    }

    /// Every file of the version (the .tflite, Core ML packages, labels, reports).
    public struct File: Codable, Hashable, Sendable {
        public let path: String
        public let format: String
        public let size: Int64
        public let sha256: String
    }

    public struct Input: Codable, Hashable, Sendable {
        public let name: String
        public let shape: [Int]
        public let dtype: String
        public let scale: Double?
        public let zeroPoint: Int?
        public let normalization: String
        /// How a photo becomes the input: "stretch" (scale each side to the input size) or
        /// "letterbox" (scale by min(H/h, W/w), centre, pad with gray 114; map the boxes back).
        /// nil for releases published before the field existed: most are stretch (docs/ios.md §5).
        public let resize: String?

        /// True when photos must be letterboxed (docs/ios.md §5).
        public var isLetterbox: Bool { resize == "letterbox" }
    }

    /// Where each detection output is. Never assume the order: TFLite's
    /// `StatefulPartitionedCall:N` order is not boxes, classes, scores, count.
    public struct Output: Codable, Hashable, Sendable {
        /// The output tensor's index in the .tflite graph.
        public let index: Int
        public let name: String
        /// Position in the interpreter's output list (`Interpreter.output(at:)`), when published.
        public let position: Int?
    }

    public struct Outputs: Codable, Hashable, Sendable {
        public let boxes: Output
        public let classes: Output
        public let scores: Output
        public let count: Output
    }

    public let model: String
    public let channel: String
    public let version: String
    public let createdAt: String
    public let minAppVersion: AppVersion
    public let bucket: String
    public let prefix: String
    public let modelFile: ModelFile
    public let files: [File]
    public let input: Input
    public let outputs: Outputs
    public let labels: [String]
    public let variant: String
    public let parentVersion: String?
    public let manifestSHA256: String
    public let registeredAt: Date

    /// Object name of the model file in `bucket` (prefix without "gs://bucket/", plus the path).
    public var modelObjectPath: String {
        String(prefix.dropFirst("gs://\(bucket)/".count)) + modelFile.path
    }

    /// Whether an app of `appVersion` may run this release.
    public func runs(on appVersion: AppVersion) -> Bool { minAppVersion <= appVersion }

    /// Decode and check a release record (data as `DocumentSnapshot.data()` returns it, with
    /// `Timestamp`s turned into `Date`s). Throws `RecordError` naming the first bad field.
    public init(record data: [String: Any], documentID: String) throws {
        typealias R = ReleaseRecord
        let reader = RecordReader(data, recordName: "release \(documentID)")
        try reader.validate(R.all)

        func invalid(_ spec: FieldSpec, _ reason: String) -> RecordError {
            .invalid(record: reader.recordName, field: spec.path, reason: reason)
        }

        model = try reader.string(R.model)
        channel = try reader.string(R.channel)
        version = try reader.string(R.version)
        guard Self.matches(version, Self.versionPattern) else {
            throw invalid(R.version, "is not a version id (YYYYMMDDtHHMMSSffffffz-xxxxxx)")
        }
        guard documentID == R.documentID(channel: channel, version: version) else {
            throw invalid(R.version, "does not match the document id \(documentID)")
        }
        createdAt = try reader.string(R.createdAt)
        let minApp = try reader.string(R.minAppVersion)
        guard let parsedMinApp = AppVersion(minApp) else {
            throw invalid(R.minAppVersion, "is not dotted integers: \(minApp)")
        }
        minAppVersion = parsedMinApp
        bucket = try reader.string(R.bucket)
        prefix = try reader.string(R.prefix)
        guard prefix == "gs://\(bucket)/models/\(model)/\(version)/" else {
            throw invalid(R.prefix, "is not gs://\(bucket)/models/\(model)/\(version)/")
        }

        modelFile = ModelFile(path: try reader.string(R.modelFilePath),
                              size: try reader.int64(R.modelFileSize),
                              sha256: try reader.string(R.modelFileSHA256),
                              uri: try reader.string(R.modelFileURI),
                              quantization: try reader.optionalString(R.modelFileQuantization))
        guard Self.matches(modelFile.path, Self.fileNamePattern) else {
            throw invalid(R.modelFilePath, "is not a plain file name")
        }
        guard modelFile.size > 0 else { throw invalid(R.modelFileSize, "is not positive") }
        guard Self.matches(modelFile.sha256, Self.sha256Pattern) else {
            throw invalid(R.modelFileSHA256, "is not 64 lowercase hex digits")
        }
        guard modelFile.uri == prefix + modelFile.path else {
            throw invalid(R.modelFileURI, "is not \(prefix + modelFile.path)")
        }

        files = try reader.elements(R.files).map { element in
            File(path: try element.string(R.filePath), format: try element.string(R.fileFormat),
                 size: try element.int64(R.fileSize), sha256: try element.string(R.fileSHA256))
        }

        input = Input(name: try reader.string(R.inputName),
                      shape: try reader.ints(R.inputShape),
                      dtype: try reader.string(R.inputDType),
                      scale: try reader.optionalDouble(R.inputScale),
                      zeroPoint: try reader.optionalInt(R.inputZeroPoint),
                      normalization: try reader.string(R.inputNormalization),
                      resize: try reader.optionalString(R.inputResize))

        func output(_ index: FieldSpec, _ name: FieldSpec, _ position: FieldSpec) throws -> Output {
            Output(index: try reader.int(index), name: try reader.string(name),
                   position: try reader.optionalInt(position))
        }
        outputs = Outputs(boxes: try output(R.boxesIndex, R.boxesName, R.boxesPosition),
                          classes: try output(R.classesIndex, R.classesName, R.classesPosition),
                          scores: try output(R.scoresIndex, R.scoresName, R.scoresPosition),
                          count: try output(R.countIndex, R.countName, R.countPosition))

        labels = try reader.strings(R.labels)
        variant = try reader.string(R.variant)
        parentVersion = try reader.optionalString(R.parentVersion)
        manifestSHA256 = try reader.string(R.manifestSHA256)
        registeredAt = try reader.date(R.registeredAt)
    }

    static let versionPattern = "^[0-9]{8}t[0-9]{12}z-[0-9a-f]{6}$"
    static let sha256Pattern = "^[0-9a-f]{64}$"
    static let fileNamePattern = "^(?!.*\\.\\.)[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

    static func matches(_ string: String, _ pattern: String) -> Bool {
        string.range(of: pattern, options: .regularExpression) != nil
    }

    /// Whether `version` is a well-formed version id (also used for pins and local folders).
    public static func isVersionID(_ version: String) -> Bool { matches(version, versionPattern) }
}

/// One entry of a channel's release list: a decoded release, or the reason its record was refused.
public struct ReleaseCandidate: Sendable {
    public let documentID: String
    public let result: Result<Release, RecordError>

    public init(documentID: String, record: [String: Any]) {
        self.documentID = documentID
        result = Result { try Release(record: record, documentID: documentID) }
            .mapError { $0 as? RecordError ?? .invalid(record: documentID, field: "*", reason: "\($0)") }
    }

    public init(_ release: Release) {
        documentID = ReleaseRecord.documentID(channel: release.channel, version: release.version)
        result = .success(release)
    }

    /// The version this entry claims to be (from the document id when the record is unreadable).
    public var version: String {
        switch result {
        case let .success(release): return release.version
        case .failure: return documentID.split(separator: "-", maxSplits: 1).last.map(String.init) ?? documentID
        }
    }
}

/// The operators' control document of a channel. A channel without one follows its newest
/// release.
public struct ChannelState: Equatable, Sendable {
    public var paused: Bool
    public var pinnedVersion: String?
    public var reason: String?
    public var updatedBy: String?

    public static let open = ChannelState(paused: false, pinnedVersion: nil, reason: nil, updatedBy: nil)

    public init(paused: Bool, pinnedVersion: String?, reason: String?, updatedBy: String?) {
        self.paused = paused
        self.pinnedVersion = pinnedVersion
        self.reason = reason
        self.updatedBy = updatedBy
    }

    public init(record data: [String: Any]?, channel: String) throws {
        guard let data else { self = .open; return }
        let reader = RecordReader(data, recordName: "channel \(channel)")
        try reader.validate(ChannelRecord.all)
        paused = try reader.optionalBool(ChannelRecord.paused) ?? false
        pinnedVersion = try reader.optionalString(ChannelRecord.pinnedVersion)
        reason = try reader.optionalString(ChannelRecord.reason)
        updatedBy = try reader.optionalString(ChannelRecord.updatedBy)
        if let pinned = pinnedVersion, !Release.isVersionID(pinned) {
            throw RecordError.invalid(record: reader.recordName, field: ChannelRecord.pinnedVersion.path,
                                      reason: "is not a version id: \(pinned)")
        }
    }
}
