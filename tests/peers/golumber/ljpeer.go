// ljpeer: Beats' own Lumberjack v2 library (github.com/elastic/go-lumber, what Filebeat and
// the other Beats send with) as a client or a server, for the framed wire's interop tests.
//
//	ljpeer send HOST:PORT COUNT WINDOW LEVEL [CA.pem]
//	    sends COUNT events {"message":"go N","n":N,"nested":{"ü":"ß ✓"}} in windows of WINDOW,
//	    zlib LEVEL (0: no compression), over TLS when CA.pem is given (server name localhost);
//	    prints "acked TOTAL" and exits 0 once every event was acknowledged.
//	ljpeer serve COUNT [CERT.pem KEY.pem]
//	    listens on 127.0.0.1 (any free port), prints "listening on PORT", then each event
//	    received as one JSON line on stdout, ACKs each window, and exits after COUNT events.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	client "github.com/elastic/go-lumber/client/v2"
	server "github.com/elastic/go-lumber/server/v2"
)

func fail(what string, err error) {
	fmt.Fprintln(os.Stderr, what+":", err)
	os.Exit(1)
}

func send(args []string) {
	count, _ := strconv.Atoi(args[1])
	window, _ := strconv.Atoi(args[2])
	level, _ := strconv.Atoi(args[3])
	var conn net.Conn
	var err error
	if len(args) > 4 {
		pem, err := os.ReadFile(args[4])
		if err != nil {
			fail("ca", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		conn, err = tls.Dial("tcp", args[0], &tls.Config{RootCAs: pool, ServerName: "localhost"})
	} else {
		conn, err = net.Dial("tcp", args[0])
	}
	if err != nil {
		fail("dial", err)
	}
	cl, err := client.NewSyncClientWithConn(conn, client.CompressionLevel(level), client.Timeout(20*time.Second))
	if err != nil {
		fail("client", err)
	}
	acked := 0
	for acked < count {
		n := window
		if count-acked < n {
			n = count - acked
		}
		batch := make([]interface{}, n)
		for i := range batch {
			batch[i] = map[string]interface{}{
				"message": fmt.Sprintf("go %d", acked+i),
				"n":       acked + i,
				"nested":  map[string]interface{}{"ü": "ß ✓"},
			}
		}
		got, err := cl.Send(batch)
		if err != nil {
			fail("send", err)
		}
		acked += got
	}
	cl.Close()
	fmt.Println("acked", acked)
}

func serve(args []string) {
	count, _ := strconv.Atoi(args[0])
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen", err)
	}
	opts := []server.Option{server.Timeout(20 * time.Second)}
	if len(args) > 2 {
		cert, err := tls.LoadX509KeyPair(args[1], args[2])
		if err != nil {
			fail("certificate", err)
		}
		listener = tls.NewListener(listener, &tls.Config{Certificates: []tls.Certificate{cert}})
	}
	s, err := server.NewWithListener(listener, opts...)
	if err != nil {
		fail("server", err)
	}
	fmt.Printf("listening on %d\n", listener.Addr().(*net.TCPAddr).Port)
	got := 0
	for got < count {
		batch := s.Receive()
		if batch == nil {
			fail("receive", fmt.Errorf("server closed after %d events", got))
		}
		for _, event := range batch.Events {
			line, _ := json.Marshal(event)
			fmt.Println(string(line))
		}
		got += len(batch.Events)
		batch.ACK()
	}
	// let the last ACK leave before the listener closes
	time.Sleep(100 * time.Millisecond)
	s.Close()
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "send" {
		send(os.Args[2:])
	} else if len(os.Args) > 2 && os.Args[1] == "serve" {
		serve(os.Args[2:])
	} else {
		fmt.Fprintln(os.Stderr, "usage: ljpeer send HOST:PORT COUNT WINDOW LEVEL [CA.pem] | ljpeer serve COUNT [CERT KEY]")
		os.Exit(2)
	}
}
