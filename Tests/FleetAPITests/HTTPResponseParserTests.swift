import FleetClient
import Testing

/// The client's HTTP/1.1 response parser, fed bytes split in every way the socket may split them.
struct HTTPResponseParserTests {
    typealias Parser = HTTPResponseParser

    func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
    func body(_ text: String) -> Parser.Event { .body(bytes(text)) }
    func head(_ status: Int, _ reason: String) -> Parser.Event { .head(Parser.Head(status: status, reason: reason)) }

    /// Feeds `input` in pieces of `size` bytes and collects what comes out, body bytes joined.
    func parse(_ input: String, pieces size: Int, finish: Bool = false) throws -> [Parser.Event] {
        var parser = Parser()
        var events: [Parser.Event] = []
        let all = bytes(input)
        var start = 0
        while start < all.count {
            events += try parser.feed(all[start..<min(start + size, all.count)])
            start += size
        }
        if finish { events += try parser.finish() }
        var joined: [Parser.Event] = []
        for event in events {
            if case .body(let more) = event, case .body(let previous) = joined.last {
                joined[joined.count - 1] = .body(previous + more)
            } else {
                joined.append(event)
            }
        }
        return joined
    }

    @Test func contentLength() throws {
        var parser = Parser()
        #expect(try parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\nhel")) == [head(200, "OK"), body("hel")])
        #expect(!parser.isComplete)
        #expect(try parser.feed(bytes("lo")) == [body("lo"), .end])
        #expect(parser.isComplete)
        // Whatever follows the answer is not part of it.
        #expect(try parser.feed(bytes("HTTP/1.1 500 Oops\r\n\r\n")) == [])
    }

    @Test func contentLengthInEverySplit() throws {
        let answer = "HTTP/1.1 404 Not Found\r\ncontent-length: 11\r\n\r\n{\"a\":\"bcd\"}"
        for size in 1...answer.utf8.count {
            #expect(try parse(answer, pieces: size) == [head(404, "Not Found"), body("{\"a\":\"bcd\"}"), .end])
        }
    }

    @Test func emptyBodies() throws {
        var parser = Parser()
        #expect(try parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) == [head(200, "OK"), .end])
        parser = Parser()
        #expect(try parser.feed(bytes("HTTP/1.1 204 No Content\r\n\r\n")) == [head(204, "No Content"), .end])
        parser = Parser(requestMethod: "HEAD")
        #expect(try parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")) == [head(200, "OK"), .end])
    }

    @Test func chunked() throws {
        let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n9;name=value\r\n, world!\n\r\n0\r\n\r\n"
        for size in 1...answer.utf8.count {
            #expect(try parse(answer, pieces: size) == [head(200, "OK"), body("hello, world!\n"), .end])
        }
    }

    @Test func chunkedWithTrailersAndBareLineFeeds() throws {
        let answer = "HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked\n\n3\nabc\n0\nX-Trailer: 1\n\n"
        #expect(try parse(answer, pieces: 4) == [head(200, "OK"), body("abc"), .end])
    }

    @Test func chunkedWinsOverContentLength() throws {
        let answer = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        #expect(try parse(answer, pieces: 7) == [head(200, "OK"), body("ok"), .end])
    }

    /// NDJSON progress comes as it is sent, before the answer is complete: each feed hands on what
    /// it has, even half a line, and the lines are cut later (NDJSONSplitter).
    @Test func streamedLinesArriveAsTheyComeEvenSplitAcrossReads() throws {
        var parser = Parser()
        var splitter = NDJSONSplitter()
        func lines(_ events: [Parser.Event]) throws -> [String] {
            var lines: [String] = []
            for case .body(let bytes) in events {
                lines += try splitter.append(bytes).map { String(decoding: $0, as: UTF8.self) }
            }
            return lines
        }
        #expect(try lines(parser.feed(bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))) == [])
        #expect(try lines(parser.feed(bytes("14\r\n{\"kind\":\"progress\"}\n\r\n8\r\n{\"kind\":"))) == ["{\"kind\":\"progress\"}"])
        #expect(try lines(parser.feed(bytes("\r\n"))) == [])
        #expect(try lines(parser.feed(bytes("A\r\n\"result\"}\n\r\n"))) == ["{\"kind\":\"result\"}"])
        #expect(try parser.feed(bytes("0\r\n\r\n")) == [.end])
    }

    @Test func bodyUntilTheConnectionCloses() throws {
        #expect(try parse("HTTP/1.0 200 OK\r\n\r\nall of it", pieces: 3, finish: true) == [head(200, "OK"), body("all of it"), .end])
        // A transfer coding other than chunked also runs to the close.
        #expect(try parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz", pieces: 100, finish: true) == [head(200, "OK"), body("xyz"), .end])
    }

    @Test func informationalAnswersAreSkipped() throws {
        let answer = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}"
        #expect(try parse(answer, pieces: 5) == [head(201, "Created"), body("{}"), .end])
    }

    @Test func emptyReason() throws {
        #expect(try parse("HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n", pieces: 100) == [head(503, ""), .end])
    }

    @Test func truncatedAnswers() throws {
        // Nothing at all, half a head, half a fixed body, half a chunked body.
        for answer in [
            "", "HTTP/1.1 200 OK\r\nContent-Le", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        ] {
            #expect(throws: Parser.ParseError.truncated) { try parse(answer, pieces: 4, finish: true) }
        }
    }

    @Test func malformedAnswers() throws {
        #expect(throws: Parser.ParseError.malformedStatusLine) { try parse("SSH-2.0-OpenSSH_9.2\r\n\r\n", pieces: 100) }
        #expect(throws: Parser.ParseError.malformedStatusLine) { try parse("HTTP/1.1 2x0 OK\r\n\r\n", pieces: 100) }
        #expect(throws: Parser.ParseError.malformedStatusLine) { try parse("HTTP/2 200 OK\r\n\r\n", pieces: 100) }
        #expect(throws: Parser.ParseError.malformedStatusLine) { try parse("HTTP/1.1 200OK\r\n\r\n", pieces: 100) }
        #expect(throws: Parser.ParseError.malformedHeader) { try parse("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", pieces: 100) }
        #expect(throws: Parser.ParseError.malformedHeader) { try parse("HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n", pieces: 100) }
        #expect(throws: Parser.ParseError.invalidContentLength) { try parse("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", pieces: 100) }
        #expect(throws: Parser.ParseError.invalidContentLength) { try parse("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", pieces: 100) }
        #expect(throws: Parser.ParseError.invalidContentLength) {
            try parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", pieces: 100)
        }
        #expect(throws: Parser.ParseError.invalidContentLength) {
            try parse("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", pieces: 100)
        }
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        #expect(throws: Parser.ParseError.invalidChunkSize) { try parse(chunked + "xyz\r\n", pieces: 100) }
        #expect(throws: Parser.ParseError.invalidChunkSize) { try parse(chunked + "\r\n", pieces: 100) }
        #expect(throws: Parser.ParseError.invalidChunkSize) { try parse(chunked + "1000000000000000\r\n", pieces: 100) }
        #expect(throws: Parser.ParseError.malformedChunk) { try parse(chunked + "2\r\nabc\r\n", pieces: 100) }
    }

    /// Lengths the peer controls are bounded: the head, a chunk line, the trailers. A large
    /// announced body costs nothing until its bytes arrive.
    @Test func oversizedAnswers() throws {
        var parser = Parser(maxHeadLength: 100)
        #expect(throws: Parser.ParseError.headTooLong(limit: 100)) {
            try parser.feed(bytes("HTTP/1.1 200 OK\r\nX-Filler: " + String(repeating: "a", count: 100) + "\r\n\r\n"))
        }
        parser = Parser(maxHeadLength: 100)
        #expect(throws: Parser.ParseError.headTooLong(limit: 100)) {
            try parser.feed(bytes(String(repeating: "A", count: 200)))
        }
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        #expect(throws: Parser.ParseError.chunkLineTooLong(limit: 1024)) {
            try parse(chunked + "1;" + String(repeating: "x", count: 2000), pieces: 100)
        }
        parser = Parser(maxHeadLength: 100)
        _ = try parser.feed(bytes(chunked + "0\r\n"))
        #expect(throws: Parser.ParseError.headTooLong(limit: 100)) {
            try parser.feed(bytes("X-Trailer: " + String(repeating: "t", count: 200)))
        }

        parser = Parser()
        #expect(try parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\nab")) == [head(200, "OK"), body("ab")])
        parser = Parser()
        #expect(try parser.feed(bytes(chunked + "fffffffffffffff\r\nab")) == [head(200, "OK"), body("ab")])
    }
}
