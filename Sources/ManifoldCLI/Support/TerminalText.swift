import Foundation

/// Removes terminal control sequences from text that others wrote — build logs, failure reasons, agent names —
/// before it reaches the user's terminal, where an escape sequence could retitle the window, clear the screen,
/// hide lines, rewrite earlier output or, on some terminals, write to the clipboard.
///
/// Removed: every C0 control except newline and tab (so also `\r` and BEL), DEL, every C1 control (U+0080–U+009F),
/// and whole escape sequences — CSI (`ESC [` … final byte), OSC, DCS, SOS, PM and APC strings (up to BEL, ST or the
/// end of the line) and two-byte escapes. Everything else, including any valid UTF-8, passes unchanged.
///
/// A filter keeps its state between chunks, so a sequence split across two reads of a log stream is still removed:
/// ```swift
/// var filter = TerminalText.Filter()
/// for try await chunk in stream { FileHandle.standardOutput.write(filter.clean(chunk)) }
/// ```
enum TerminalText {
    /// `text` without control characters and escape sequences.
    static func clean(_ text: String) -> String {
        var filter = Filter()
        return String(decoding: filter.clean(Data(text.utf8)), as: UTF8.self)
    }

    /// A byte-stream filter; see ``TerminalText``.
    struct Filter {
        enum State {
            case ground
            /// A 0xC2 byte was seen: the start of a C1 control (0x80–0x9F) or of an ordinary character.
            case leadC2
            /// After ESC.
            case escape
            /// After ESC and intermediate bytes (0x20–0x2F).
            case escapeIntermediate
            /// Inside a control sequence (ESC [ or CSI): parameters and intermediates until a final byte.
            case controlSequence
            /// Inside an OSC/DCS/SOS/PM/APC string, up to BEL, ST or a newline.
            case string
            /// ESC inside a string: `\` ends it (ST).
            case stringEscape
            /// 0xC2 inside a string: 0x9C (ST) ends it.
            case stringLeadC2
        }

        private(set) var state = State.ground

        /// The bytes of `input` that may reach a terminal. A 0xC2 byte at the very end is held until the next
        /// chunk says whether it starts a C1 control; at the end of a stream it is an incomplete character anyway.
        mutating func clean(_ input: Data) -> Data {
            var output = Data()
            output.reserveCapacity(input.count)
            for byte in input { feed(byte, into: &output) }
            return output
        }

        private mutating func feed(_ byte: UInt8, into output: inout Data) {
            switch state {
            case .ground:
                ground(byte, into: &output)
            case .leadC2:
                state = .ground
                if (0x80...0x9F).contains(byte) {
                    c1(byte)
                } else {
                    output.append(0xC2)
                    ground(byte, into: &output)
                }
            case .escape:
                switch byte {
                case UInt8(ascii: "["): state = .controlSequence
                case UInt8(ascii: "]"), UInt8(ascii: "P"), UInt8(ascii: "X"), UInt8(ascii: "^"), UInt8(ascii: "_"):
                    state = .string
                case 0x1B: state = .escape
                case 0x20...0x2F: state = .escapeIntermediate
                case 0x30...0x7E: state = .ground
                default:
                    state = .ground
                    ground(byte, into: &output)
                }
            case .escapeIntermediate:
                switch byte {
                case 0x20...0x2F: break
                case 0x30...0x7E: state = .ground
                default:
                    state = .ground
                    ground(byte, into: &output)
                }
            case .controlSequence:
                switch byte {
                case 0x20...0x3F: break
                case 0x40...0x7E: state = .ground
                default:
                    // Not a valid sequence: drop what was read of it and treat the byte as text.
                    state = .ground
                    ground(byte, into: &output)
                }
            case .string:
                switch byte {
                case 0x07: state = .ground
                case 0x1B: state = .stringEscape
                case 0xC2: state = .stringLeadC2
                case 0x0A:
                    // An unterminated string ends at the line, so one bad sequence cannot swallow the whole log.
                    state = .ground
                    output.append(byte)
                default: break
                }
            case .stringEscape:
                if byte == UInt8(ascii: "\\") {
                    state = .ground
                } else {
                    state = .escape
                    feed(byte, into: &output)
                }
            case .stringLeadC2:
                state = byte == 0x9C ? .ground : .string
            }
        }

        private mutating func ground(_ byte: UInt8, into output: inout Data) {
            switch byte {
            case 0x0A, 0x09: output.append(byte)
            case 0x1B: state = .escape
            case 0x00...0x1F, 0x7F: break
            case 0xC2: state = .leadC2
            default: output.append(byte)
            }
        }

        private mutating func c1(_ byte: UInt8) {
            switch byte {
            case 0x9B: state = .controlSequence
            case 0x90, 0x98, 0x9D, 0x9E, 0x9F: state = .string
            default: state = .ground
            }
        }
    }
}
