module warren/interop

go 1.19

require github.com/rabbitmq/amqp091-go v1.5.0

// The Go client is Debian's golang-github-rabbitmq-amqp091-go-dev; builds run
// offline (GOPROXY=off), so the module is taken from its Debian source path.
replace github.com/rabbitmq/amqp091-go => /usr/share/gocode/src/github.com/rabbitmq/amqp091-go
