import NIOCore

extension ByteBuffer {
    /// Reads a NUL-terminated string that must be valid UTF-8, consuming it and its terminator.
    /// Consumes nothing when it throws.
    public mutating func readCString(_ what: @autoclosure () -> String) throws(WireError) -> String {
        let view = self.readableBytesView
        guard let nul = view.firstIndex(of: 0) else {
            throw .malformed("\(what()) has no NUL terminator")
        }
        guard let string = String(validating: view[view.startIndex..<nul], as: UTF8.self) else {
            throw .malformed("\(what()) is not valid UTF-8")
        }
        self.moveReaderIndex(forwardBy: nul - view.startIndex + 1)
        return string
    }

    /// Reads a big-endian Int32 or throws, naming the field that is missing.
    public mutating func readInt32(_ what: @autoclosure () -> String) throws(WireError) -> Int32 {
        guard let value = self.readInteger(as: Int32.self) else {
            throw .malformed("\(what()) is truncated")
        }
        return value
    }

    /// Throws unless every byte has been consumed.
    public func expectEnd(of what: @autoclosure () -> String) throws(WireError) {
        guard self.readableBytes == 0 else {
            throw .malformed("trailing bytes after \(what())")
        }
    }

    /// Writes `string` and a NUL terminator. An embedded NUL would end the string early on the peer's side and
    /// desynchronise its parser, so it is dropped.
    public mutating func writeCString(_ string: String) {
        if string.utf8.contains(0) {
            self.writeBytes(string.utf8.filter { $0 != 0 })
        } else {
            self.writeString(string)
        }
        self.writeInteger(UInt8(0))
    }

    /// Writes a regular message: the type byte, an Int32 length that counts itself, then what `body` writes.
    public mutating func writeMessage(type: UInt8, _ body: (inout ByteBuffer) -> Void) {
        self.writeInteger(type)
        self.writeLengthPrefixed(body)
    }

    /// Writes an Int32 length that counts itself, then what `body` writes.
    public mutating func writeLengthPrefixed(_ body: (inout ByteBuffer) -> Void) {
        let lengthIndex = self.writerIndex
        self.writeInteger(Int32(0))
        body(&self)
        self.setInteger(Int32(self.writerIndex - lengthIndex), at: lengthIndex)
    }
}
