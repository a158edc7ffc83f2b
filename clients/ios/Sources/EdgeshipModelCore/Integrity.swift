import CryptoKit
import Foundation

/// A downloaded or stored file is not the one the release names.
public enum IntegrityError: Error, Equatable, CustomStringConvertible, Sendable {
    case size(expected: Int64, actual: Int64)
    case sha256(expected: String, actual: String)

    public var description: String {
        switch self {
        case let .size(expected, actual):
            return "size \(actual) bytes, the release says \(expected)"
        case let .sha256(expected, actual):
            return "sha256 \(actual.prefix(16))…, the release says \(expected.prefix(16))…"
        }
    }
}

public enum Integrity {
    /// Lowercase hex SHA-256 of a file, read in 1 MiB chunks (models are never loaded whole).
    public static func sha256Hex(of url: URL) throws -> String {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    public static func size(of url: URL) throws -> Int64 {
        let values = try url.resourceValues(forKeys: [.fileSizeKey])
        return Int64(values.fileSize ?? -1)
    }

    /// Size first (cheap), then SHA-256.
    public static func verify(_ url: URL, size expectedSize: Int64, sha256 expectedSHA: String) throws {
        let actualSize = try size(of: url)
        guard actualSize == expectedSize else { throw IntegrityError.size(expected: expectedSize, actual: actualSize) }
        let actualSHA = try sha256Hex(of: url)
        guard actualSHA == expectedSHA.lowercased() else {
            throw IntegrityError.sha256(expected: expectedSHA, actual: actualSHA)
        }
    }
}
