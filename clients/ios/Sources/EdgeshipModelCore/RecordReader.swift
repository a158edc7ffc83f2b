import Foundation

/// Why a Firestore document could not be read as the contract says.
public enum RecordError: Error, Equatable, CustomStringConvertible, Sendable {
    case missing(record: String, field: String)
    case wrongType(record: String, field: String, expected: FieldKind, found: String)
    case invalid(record: String, field: String, reason: String)

    public var description: String {
        switch self {
        case let .missing(record, field):
            return "\(record): field \(field) is missing"
        case let .wrongType(record, field, expected, found):
            return "\(record): field \(field) should be \(expected.rawValue), is \(found)"
        case let .invalid(record, field, reason):
            return "\(record): field \(field) \(reason)"
        }
    }
}

/// Typed access to a document's data (`[String: Any]` as the Firebase SDK returns it, with
/// Firestore `Timestamp`s already turned into `Date`s) through `FieldSpec`s only.
///
/// Numbers arrive as `NSNumber`; Firestore booleans are `NSNumber`s too, so they are told apart
/// by their CoreFoundation type, never by a cast (`NSNumber(1) as? Bool` succeeds).
public struct RecordReader {
    public let data: [String: Any]
    /// Names the record in errors, e.g. "release stable-20261124t…".
    public let recordName: String
    /// Path prefix this reader stands for ("files[]." for an element of `files`).
    let prefix: String

    public init(_ data: [String: Any], recordName: String) {
        self.init(data, recordName: recordName, prefix: "")
    }

    init(_ data: [String: Any], recordName: String, prefix: String) {
        self.data = data
        self.recordName = recordName
        self.prefix = prefix
    }

    // MARK: typed getters

    public func string(_ spec: FieldSpec) throws -> String {
        try required(spec, try optionalString(spec))
    }

    public func optionalString(_ spec: FieldSpec) throws -> String? {
        try typed(spec) { $0 as? String }
    }

    public func int(_ spec: FieldSpec) throws -> Int {
        try required(spec, try optionalInt(spec))
    }

    public func optionalInt(_ spec: FieldSpec) throws -> Int? {
        try typed(spec) { Self.integer($0).flatMap { Int(exactly: $0) } }
    }

    public func int64(_ spec: FieldSpec) throws -> Int64 {
        try required(spec, try typed(spec) { Self.integer($0) })
    }

    public func double(_ spec: FieldSpec) throws -> Double {
        try required(spec, try optionalDouble(spec))
    }

    public func optionalDouble(_ spec: FieldSpec) throws -> Double? {
        try typed(spec) { value in
            if let n = value as? NSNumber, !Self.isBoolean(n) { return n.doubleValue }
            return value as? Double
        }
    }

    public func bool(_ spec: FieldSpec) throws -> Bool {
        try required(spec, try optionalBool(spec))
    }

    public func optionalBool(_ spec: FieldSpec) throws -> Bool? {
        try typed(spec) { value in
            if let n = value as? NSNumber { return Self.isBoolean(n) ? n.boolValue : nil }
            return value as? Bool
        }
    }

    public func date(_ spec: FieldSpec) throws -> Date {
        try required(spec, try typed(spec) { $0 as? Date })
    }

    public func strings(_ spec: FieldSpec) throws -> [String] {
        try required(spec, try typed(spec) { value -> [String]? in
            guard let array = value as? [Any] else { return nil }
            let strings = array.compactMap { $0 as? String }
            return strings.count == array.count ? strings : nil
        })
    }

    public func ints(_ spec: FieldSpec) throws -> [Int] {
        try required(spec, try typed(spec) { value -> [Int]? in
            guard let array = value as? [Any] else { return nil }
            let ints = array.compactMap { Self.integer($0).flatMap { Int(exactly: $0) } }
            return ints.count == array.count ? ints : nil
        })
    }

    /// Readers over the elements of an array of maps (their specs are "path[].field").
    public func elements(_ spec: FieldSpec) throws -> [RecordReader] {
        let maps = try required(spec, try typed(spec) { value -> [[String: Any]]? in
            guard let array = value as? [Any] else { return nil }
            let maps = array.compactMap { $0 as? [String: Any] }
            return maps.count == array.count ? maps : nil
        })
        return maps.enumerated().map { index, element in
            RecordReader(element, recordName: "\(recordName) \(spec.path)[\(index)]",
                         prefix: prefix + spec.path + "[].")
        }
    }

    /// Checks presence and kind of every spec (so a bad record is refused as a whole, with the
    /// first problem named, before anything is installed from it).
    public func validate(_ specs: [FieldSpec]) throws {
        for spec in specs where spec.path.hasPrefix(prefix) {
            let relative = spec.path.dropFirst(prefix.count)
            if let marker = relative.range(of: "[].") {
                // a field of every element of an array of maps; the array's own spec says
                // whether the array must be there
                let arraySpec = FieldSpec(prefix + String(relative[..<marker.lowerBound]), .mapArray, .optional)
                guard try raw(arraySpec) != nil else { continue }
                for element in try elements(arraySpec) {
                    try element.validate([spec])
                }
            } else {
                try check(spec)
            }
        }
    }

    private func check(_ spec: FieldSpec) throws {
        let value = try raw(spec)
        switch spec.presence {
        case .required where value == nil, .nullable where !isPresent(spec):
            throw RecordError.missing(record: recordName, field: spec.path)
        default:
            break
        }
        guard value != nil else { return }
        switch spec.kind {
        case .string: _ = try string(spec)
        case .int: _ = try int(spec)
        case .int64: _ = try int64(spec)
        case .double: _ = try double(spec)
        case .bool: _ = try bool(spec)
        case .timestamp: _ = try date(spec)
        case .stringArray: _ = try strings(spec)
        case .intArray: _ = try ints(spec)
        case .map: _ = try required(spec, try typed(spec) { $0 as? [String: Any] })
        case .mapArray: _ = try elements(spec)
        }
    }

    // MARK: plumbing

    /// The value at `spec.path`, nil when absent or null.
    func raw(_ spec: FieldSpec) throws -> Any? {
        guard spec.path.hasPrefix(prefix) else {
            throw RecordError.invalid(record: recordName, field: spec.path, reason: "is not under \(prefix)")
        }
        var node: Any? = data
        for key in spec.path.dropFirst(prefix.count).split(separator: ".") {
            guard let map = node as? [String: Any] else { return nil }
            node = map[String(key)]
        }
        if node is NSNull { return nil }
        return node
    }

    /// Whether the key exists (even with a null value).
    func isPresent(_ spec: FieldSpec) -> Bool {
        var node: Any? = data
        let keys = spec.path.dropFirst(prefix.count).split(separator: ".")
        for (i, key) in keys.enumerated() {
            guard let map = node as? [String: Any] else { return false }
            if i == keys.count - 1 { return map.keys.contains(String(key)) }
            node = map[String(key)]
        }
        return false
    }

    private func typed<T>(_ spec: FieldSpec, _ convert: (Any) -> T?) throws -> T? {
        guard let value = try raw(spec) else { return nil }
        guard let converted = convert(value) else {
            throw RecordError.wrongType(record: recordName, field: spec.path, expected: spec.kind,
                                        found: String(describing: type(of: value)))
        }
        return converted
    }

    private func required<T>(_ spec: FieldSpec, _ value: T?) throws -> T {
        guard let value else { throw RecordError.missing(record: recordName, field: spec.path) }
        return value
    }

    static func isBoolean(_ number: NSNumber) -> Bool {
        CFGetTypeID(number as CFTypeRef) == CFBooleanGetTypeID()
    }

    /// An integer (Firestore integerValue: Int64). Refuses booleans and floating-point numbers:
    /// Firestore keeps integers and doubles apart, and so does the contract.
    static func integer(_ value: Any) -> Int64? {
        // NSNumber first: `as? Int64` on a boolean NSNumber would succeed (true -> 1).
        guard let number = value as? NSNumber, !isBoolean(number) else { return nil }
        let encoding = String(cString: number.objCType)
        guard encoding != "d", encoding != "f" else { return nil }
        return number.int64Value
    }
}
