import Foundation
import FuzzSupport
import ManifoldAPI
import ManifoldCore

/// Request bodies of `/api/v1`, decoded as the coordinator decodes them (`APICoding`): any bytes decode or fail
/// with a `DecodingError`; a decoded request encodes to JSON that decodes to the same request; a build spec's
/// `validate()` accepts it or names a field.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAPIRequest(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = fuzzInput(bytes, count)
    if let spec = roundTrip(BuildSpec.self, data) {
        do {
            try spec.validate()
            _ = try? ImageReference(parsing: spec.image)
            for platform in spec.platforms { _ = platform.platform.normalized().key }
        } catch {
            fuzzExpect(!error.field.isEmpty, "a validation error without a field: \(error)")
        }
    }
    _ = roundTrip(JoinRequest.self, data)
    _ = roundTrip(PollRequest.self, data)
    _ = roundTrip(HeartbeatRequest.self, data)
    _ = roundTrip(CompleteRequest.self, data)
    _ = roundTrip(RetryRequest.self, data)
    _ = roundTrip(AgentStateRequest.self, data)
    _ = roundTrip(CreateTokenRequest.self, data)
    _ = roundTrip(CreatePoolRequest.self, data)
    return 0
}

func roundTrip<T: Codable & Equatable>(_: T.Type, _ data: Data) -> T? {
    let value: T
    do {
        value = try APICoding.decoder().decode(T.self, from: data)
    } catch is DecodingError {
        return nil
    } catch {
        fuzzExpect(false, "decoding \(T.self) threw \(type(of: error)), not a DecodingError: \(error)")
        return nil
    }
    do {
        let again = try APICoding.decoder().decode(T.self, from: APICoding.encoder().encode(value))
        fuzzExpect(again == value, "\(T.self) changed in an encode-decode round trip: \(value) became \(again)")
    } catch {
        fuzzExpect(false, "a decoded \(T.self) does not survive an encode-decode round trip: \(error)")
    }
    return value
}
