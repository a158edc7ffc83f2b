import Foundation

/// A dotted app version, compared numerically: "1.4" < "1.10", "1.2" == "1.2.0".
/// The same grammar as the manifest's `min_app_version` (1 to 3 integers of up to 6 digits).
public struct AppVersion: Comparable, Hashable, Sendable, Codable, CustomStringConvertible,
    ExpressibleByStringLiteral {
    public let major: Int
    public let minor: Int
    public let patch: Int

    public init(major: Int, minor: Int = 0, patch: Int = 0) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    /// nil unless `string` is 1-3 dot-separated integers ("2", "2.1", "2.1.3").
    public init?(_ string: String) {
        let parts = string.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...3).contains(parts.count),
              parts.allSatisfy({ (1...6).contains($0.count) && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) })
        else { return nil }
        let numbers = parts.compactMap { Int($0) }
        guard numbers.count == parts.count else { return nil }
        let padded = numbers + Array(repeating: 0, count: 3 - numbers.count)
        self.init(major: padded[0], minor: padded[1], patch: padded[2])
    }

    /// For literals in code and tests; a malformed literal is a programming error.
    public init(stringLiteral value: String) {
        guard let version = AppVersion(value) else { preconditionFailure("not an app version: \(value)") }
        self = version
    }

    /// `CFBundleShortVersionString` of the bundle (the version users see), nil if unreadable.
    public static func current(bundle: Bundle = .main) -> AppVersion? {
        (bundle.object(forInfoDictionaryKey: "CFBundleShortVersionString") as? String).flatMap(AppVersion.init)
    }

    public static func < (lhs: AppVersion, rhs: AppVersion) -> Bool {
        (lhs.major, lhs.minor, lhs.patch) < (rhs.major, rhs.minor, rhs.patch)
    }

    public var description: String { "\(major).\(minor).\(patch)" }

    public init(from decoder: Decoder) throws {
        let string = try decoder.singleValueContainer().decode(String.self)
        guard let version = AppVersion(string) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "not an app version: \(string)"))
        }
        self = version
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
