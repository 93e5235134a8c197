// connect_channels: connect as guest, open 50 channels, close them and the
// connection cleanly, and check the server properties received in connection.start.
package main

import (
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	s "warren/interop/internal/scenario"
)

const channels = 50

func main() {
	url := s.Start(30 * time.Second)
	conn := s.Dial(url)
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))

	s.CheckServerProperties(conn.Properties)
	fmt.Printf("protocol %d-%d\n", conn.Major, conn.Minor)

	chs := make([]*amqp.Channel, 0, channels)
	for i := 0; i < channels; i++ {
		ch, err := conn.Channel()
		if err != nil {
			s.Fail("opening channel %d failed: %v", i+1, err)
		}
		chs = append(chs, ch)
	}
	fmt.Printf("opened %d channels\n", channels)

	for i, ch := range chs {
		if err := ch.Close(); err != nil {
			s.Fail("closing channel %d failed: %v", i+1, err)
		}
	}
	fmt.Printf("closed %d channels\n", channels)

	if err := conn.Close(); err != nil {
		s.Fail("closing the connection failed: %v", err)
	}
	select {
	case err, ok := <-closed:
		// amqp091-go reports a clean Close() with a nil error, unless its reader sees EOF
		// first: a broker that closes the socket right after connection.close-ok (instead of
		// letting the client close it, as RabbitMQ does) makes it report 501 "EOF" here.
		s.Check(!ok && err == nil,
			"clean Close() was reported to NotifyClose as an error: %v "+
				"(an EOF here usually means the broker closed the socket right after "+
				"connection.close-ok instead of waiting for the client to close it)", err)
	case <-time.After(5 * time.Second):
		s.Fail("connection close notification not delivered")
	}
	s.Check(conn.IsClosed(), "connection is not closed after connection.close-ok")
	fmt.Println("closed the connection")
}
