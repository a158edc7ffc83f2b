// The Firestore contract: every collection, field name and field type this package reads, in
// ONE place. Nothing else in the package spells a field name; decoders go through these specs.
//
// tests/functions/test_swift_contract.py parses this file (regular expressions over the
// `static let NAME = FieldSpec("path", .kind[, .presence])` lines and the `all` lists) and checks
// it against a release record written by the real register_model function and a control
// document written by the real `edgeship channel` code. Keep one declaration per line.
//
// Paths: "a.b" is field b of map a; "files[].path" is field path of every element of the array
// of maps "files". Kinds: string, int, int64, double, bool, timestamp, stringArray, intArray,
// map, mapArray. Presence: required (present, not null), nullable (present, may be null),
// optional (may be absent or null).

/// The type a field must have, as the Firebase iOS SDK hands it over (`DocumentSnapshot.data()`).
public enum FieldKind: String, Sendable, Codable {
    case string, int, int64, double, bool, timestamp, stringArray, intArray, map, mapArray
}

/// Whether a field must be there.
public enum FieldPresence: String, Sendable, Codable {
    case required, nullable, optional
}

/// One field of a Firestore document: its path, kind and presence.
public struct FieldSpec: Hashable, Sendable, CustomStringConvertible {
    public let path: String
    public let kind: FieldKind
    public let presence: FieldPresence

    public init(_ path: String, _ kind: FieldKind, _ presence: FieldPresence = .required) {
        self.path = path
        self.kind = kind
        self.presence = presence
    }

    public var description: String { "\(path) (\(kind.rawValue), \(presence.rawValue))" }
}

/// `models/{model}/releases/{channel}-{version}`: written once by the register_model function
/// (docs/delivery.md §3), what clients list and install.
public enum ReleaseRecord {
    public static let modelsCollection = "models"
    public static let collection = "releases"
    /// Query page size: infra/firestore.rules refuses release lists above 50.
    public static let listLimit = 50

    public static func documentID(channel: String, version: String) -> String { "\(channel)-\(version)" }

    public static let channel = FieldSpec("channel", .string)
    public static let version = FieldSpec("version", .string)
    public static let model = FieldSpec("model", .string)
    public static let createdAt = FieldSpec("created_at", .string)
    public static let minAppVersion = FieldSpec("min_app_version", .string)
    public static let bucket = FieldSpec("bucket", .string)
    public static let prefix = FieldSpec("prefix", .string)
    public static let modelFile = FieldSpec("model_file", .map)
    public static let modelFilePath = FieldSpec("model_file.path", .string)
    public static let modelFileSize = FieldSpec("model_file.size", .int64)
    public static let modelFileSHA256 = FieldSpec("model_file.sha256", .string)
    public static let modelFileURI = FieldSpec("model_file.uri", .string)
    public static let modelFileQuantization = FieldSpec("model_file.quantization", .string, .nullable)
    public static let files = FieldSpec("files", .mapArray)
    public static let filePath = FieldSpec("files[].path", .string)
    public static let fileFormat = FieldSpec("files[].format", .string)
    public static let fileSize = FieldSpec("files[].size", .int64)
    public static let fileSHA256 = FieldSpec("files[].sha256", .string)
    public static let input = FieldSpec("input", .map)
    public static let inputName = FieldSpec("input.name", .string)
    public static let inputShape = FieldSpec("input.shape", .intArray)
    public static let inputDType = FieldSpec("input.dtype", .string)
    public static let inputScale = FieldSpec("input.scale", .double, .nullable)
    public static let inputZeroPoint = FieldSpec("input.zero_point", .int, .nullable)
    public static let inputNormalization = FieldSpec("input.normalization", .string)
    /// "stretch" or "letterbox"; absent in releases published before it (most are stretch). docs/ios.md §5.
    public static let inputResize = FieldSpec("input.resize", .string, .optional)
    public static let outputs = FieldSpec("outputs", .map)
    public static let boxesIndex = FieldSpec("outputs.boxes.index", .int)
    public static let boxesName = FieldSpec("outputs.boxes.name", .string)
    public static let boxesPosition = FieldSpec("outputs.boxes.position", .int, .optional)
    public static let classesIndex = FieldSpec("outputs.classes.index", .int)
    public static let classesName = FieldSpec("outputs.classes.name", .string)
    public static let classesPosition = FieldSpec("outputs.classes.position", .int, .optional)
    public static let scoresIndex = FieldSpec("outputs.scores.index", .int)
    public static let scoresName = FieldSpec("outputs.scores.name", .string)
    public static let scoresPosition = FieldSpec("outputs.scores.position", .int, .optional)
    public static let countIndex = FieldSpec("outputs.count.index", .int)
    public static let countName = FieldSpec("outputs.count.name", .string)
    public static let countPosition = FieldSpec("outputs.count.position", .int, .optional)
    public static let labels = FieldSpec("labels", .stringArray)
    public static let variant = FieldSpec("variant", .string)
    public static let parentVersion = FieldSpec("parent_version", .string, .nullable)
    public static let manifestSHA256 = FieldSpec("manifest_sha256", .string)
    public static let registeredAt = FieldSpec("registered_at", .timestamp)

    /// Every field above; a record is checked against all of them before it is used.
    public static let all: [FieldSpec] = [
        channel, version, model, createdAt, minAppVersion, bucket, prefix,
        modelFile, modelFilePath, modelFileSize, modelFileSHA256, modelFileURI, modelFileQuantization,
        files, filePath, fileFormat, fileSize, fileSHA256,
        input, inputName, inputShape, inputDType, inputScale, inputZeroPoint, inputNormalization,
        inputResize,
        outputs, boxesIndex, boxesName, boxesPosition, classesIndex, classesName, classesPosition,
        scoresIndex, scoresName, scoresPosition, countIndex, countName, countPosition,
        labels, variant, parentVersion, manifestSHA256, registeredAt,
    ]

    /// Fields the function writes that this package deliberately does not read (the contract
    /// test fails on any other field it does not know).
    public static let notRead: [String] = ["files[].quantization", "files[].uri"]
}

/// `models/{model}/channels/{channel}`: the operators' control document (`edgeship channel`).
public enum ChannelRecord {
    public static let collection = "channels"

    public static let paused = FieldSpec("paused", .bool, .optional)
    public static let pinnedVersion = FieldSpec("pinned_version", .string, .optional)
    public static let reason = FieldSpec("reason", .string, .optional)
    public static let updatedBy = FieldSpec("updated_by", .string, .optional)

    public static let all: [FieldSpec] = [paused, pinnedVersion, reason, updatedBy]
}
