import EdgeshipModelCore
import Foundation
import Network

enum NetworkConditions {
    /// The current network path, once (NWPathMonitor delivers the current path right after start).
    static func currentPath() async -> NWPath {
        await withCheckedContinuation { continuation in
            let monitor = NWPathMonitor()
            let queue = DispatchQueue(label: "dev.edgeship.model-downloader.path")
            var resumed = false
            monitor.pathUpdateHandler = { path in
                // pathUpdateHandler runs on `queue`, serially: `resumed` needs no lock.
                guard !resumed else { return }
                resumed = true
                monitor.cancel()
                continuation.resume(returning: path)
            }
            monitor.start(queue: queue)
        }
    }

    /// nil when a foreground download may start now, else why not.
    static func unmet(_ conditions: ModelDownloadConditions) async -> String? {
        let path = await currentPath()
        if path.status != .satisfied { return "no network" }
        if !conditions.allowsCellularAccess, path.usesInterfaceType(.cellular) { return "on cellular" }
        if !conditions.allowsExpensiveNetworkAccess, path.isExpensive { return "on an expensive network" }
        if !conditions.allowsConstrainedNetworkAccess, path.isConstrained { return "in Low Data Mode" }
        return nil
    }
}
