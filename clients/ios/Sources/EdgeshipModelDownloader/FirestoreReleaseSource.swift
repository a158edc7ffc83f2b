import EdgeshipModelCore
import FirebaseFirestore
import Foundation

/// Reads a channel from Firestore: its control document and its release records, decoded
/// through the contract (FirestoreContract.swift). Reads only; the security rules let signed-in
/// clients read `models/**` (release lists of at most 50).
struct FirestoreReleaseSource {
    let db: Firestore

    private func modelDocument(_ model: String) -> DocumentReference {
        db.collection(ReleaseRecord.modelsCollection).document(model)
    }

    func channelState(model: String, channel: String) async throws -> ChannelState {
        let snapshot = try await modelDocument(model).collection(ChannelRecord.collection).document(channel).getDocument()
        return try ChannelState(record: snapshot.data(with: .estimate).map(Self.normalize), channel: channel)
    }

    /// The channel's newest releases, newest first (index: channel ASC, version DESC).
    func newestReleases(model: String, channel: String) async throws -> [ReleaseCandidate] {
        let snapshot = try await modelDocument(model).collection(ReleaseRecord.collection)
            .whereField(ReleaseRecord.channel.path, isEqualTo: channel)
            .order(by: ReleaseRecord.version.path, descending: true)
            .limit(to: ReleaseRecord.listLimit)
            .getDocuments()
        return snapshot.documents.map {
            ReleaseCandidate(documentID: $0.documentID, record: Self.normalize($0.data(with: .estimate)))
        }
    }

    /// One release by version (a pin); nil if the channel has no such release.
    func release(model: String, channel: String, version: String) async throws -> ReleaseCandidate? {
        let id = ReleaseRecord.documentID(channel: channel, version: version)
        let snapshot = try await modelDocument(model).collection(ReleaseRecord.collection).document(id).getDocument()
        guard let data = snapshot.data(with: .estimate) else { return nil }
        return ReleaseCandidate(documentID: id, record: Self.normalize(data))
    }

    /// Calls `onChange` whenever the channel's newest release or its control document changes
    /// (the SDK keeps the listeners alive across reconnects). Remove the returned registrations
    /// to stop.
    func listen(model: String, channel: String, onChange: @escaping () -> Void) -> [ListenerRegistration] {
        let releases = modelDocument(model).collection(ReleaseRecord.collection)
            .whereField(ReleaseRecord.channel.path, isEqualTo: channel)
            .order(by: ReleaseRecord.version.path, descending: true)
            .limit(to: 1)
            .addSnapshotListener { snapshot, _ in if snapshot != nil { onChange() } }
        let control = modelDocument(model).collection(ChannelRecord.collection).document(channel)
            .addSnapshotListener { snapshot, _ in if snapshot != nil { onChange() } }
        return [releases, control]
    }

    /// Firestore `Timestamp`s become `Date`s (EdgeshipModelCore does not depend on Firebase).
    static func normalize(_ data: [String: Any]) -> [String: Any] {
        data.mapValues(normalizeValue)
    }

    private static func normalizeValue(_ value: Any) -> Any {
        switch value {
        case let timestamp as Timestamp: return timestamp.dateValue()
        case let map as [String: Any]: return normalize(map)
        case let array as [Any]: return array.map(normalizeValue)
        default: return value
        }
    }
}
