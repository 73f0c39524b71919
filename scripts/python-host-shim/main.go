// Command pulumi-language-python-shim stands between a Pulumi CLI and an older Python language host, so that
// CrossGuard policy packs written in Python run on the module-built engine (see scripts/bootstrap-pulumi.sh).
//
// Why: since v3.221 the CLI starts a Python policy pack through the language host's RunPlugin, describing the pack
// in RunPluginRequest.info and kind="analyzer" and leaving the deprecated `program` field empty
// (pkg/resource/plugin/plugin.go ExecPlugin, langruntime_plugin.go RunPlugin). The v3.79 host, the newest the Go
// module registry serves, knows neither field: it runs `python "" <engine address>` in the CLI's working directory
// (sdk/python/cmd/pulumi-language-python/main.go RunPlugin at v3.79.0), and Python runs `./__main__.py` for "",
// i.e. the stack's own program instead of the pack. That process prints no port, so the CLI reports
// `policy pack "..." failed to start: could not read plugin [...]: EOF` (or the program's exit status).
//
// What: the shim starts the real host with the arguments it was given, serves the LanguageRuntime service on a
// port of its own and forwards every call to the host byte for byte, except RunPlugin for kind "analyzer", which it
// serves the way the v3.259 host does: `python -u -m pulumi.policy <args> <pack directory>` in the pack's directory,
// with the pack's own runtime options (virtualenv, toolchain), behind the SDK's PolicyProxy that hands the pack the
// stack's configuration. For other kinds it fills the deprecated `program` field from `info`.
//
// Usage: pulumi-language-python-shim HOST [HOST ARGUMENTS...]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/pulumi/pulumi/sdk/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
)

const runPluginMethod = "/pulumirpc.LanguageRuntime/RunPlugin"

// maxMessageSize is the limit Pulumi's own gRPC servers and clients use (rpcutil.maxRPCMessageSize).
const maxMessageSize = 400 * 1024 * 1024

// frame is one gRPC message kept as its wire bytes; rawCodec moves frames without decoding them.
type frame struct{ payload []byte }

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.(*frame).payload, nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	v.(*frame).payload = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

type shim struct{ host *grpc.ClientConn }

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python-shim: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) < 2 {
		return errors.New("usage: pulumi-language-python-shim HOST [HOST ARGUMENTS...]")
	}
	host := exec.Command(os.Args[1], os.Args[2:]...)
	host.Stderr = os.Stderr
	host.SysProcAttr = hostAttr()
	hostOut, err := host.StdoutPipe()
	if err != nil {
		return err
	}
	if err := host.Start(); err != nil {
		return fmt.Errorf("starting the language host: %w", err)
	}
	waited := false
	defer func() {
		if !waited { // a setup error: the host must not outlive the shim
			_ = host.Process.Kill()
			_ = host.Wait()
		}
	}()
	out := bufio.NewReader(hostOut)
	line, err := out.ReadString('\n')
	if err != nil {
		return fmt.Errorf("the language host printed no port: %w", err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return fmt.Errorf("the language host printed %q instead of a port", line)
	}
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallRecvMsgSize(maxMessageSize)))
	if err != nil {
		return err
	}
	s := &shim{host: conn}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init:    func(*grpc.Server) error { return nil },
		Options: []grpc.ServerOption{grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(s.handle)},
	})
	if err != nil {
		return err
	}
	fmt.Printf("%d\n", handle.Port)
	go func() { _, _ = io.Copy(os.Stdout, out) }()

	// The host's end is ours: when it exits (the CLI interrupts the whole process group), so do we.
	werr := host.Wait()
	waited = true
	var exitErr *exec.ExitError
	if errors.As(werr, &exitErr) {
		if status, ok := exitErr.Sys().(syscall.WaitStatus); ok && status.Exited() {
			os.Exit(status.ExitStatus())
		}
		os.Exit(1)
	}
	return werr
}

// handle serves every method: RunPlugin is looked at, everything else goes to the host as it came.
func (s *shim) handle(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	if method != runPluginMethod {
		return s.forward(stream, method, nil)
	}
	first := &frame{}
	if err := stream.RecvMsg(first); err != nil {
		return err
	}
	var req pulumirpc.RunPluginRequest
	if err := proto.Unmarshal(first.payload, &req); err != nil {
		return err
	}
	if req.Kind == string(apitype.AnalyzerPlugin) {
		return runPolicyPack(&req, &runPluginStream{stream})
	}
	//nolint:staticcheck // the deprecated field is the only one the older host reads
	if req.Program == "" && req.Info != nil {
		req.Program = req.Info.ProgramDirectory //nolint:staticcheck
		payload, err := proto.Marshal(&req)
		if err != nil {
			return err
		}
		first.payload = payload
	}
	return s.forward(stream, method, first)
}

// forward relays one call of any shape (unary or streaming) to the host.
func (s *shim) forward(stream grpc.ServerStream, method string, first *frame) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		ctx = metadata.NewOutgoingContext(ctx, md.Copy())
	}
	client, err := s.host.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	sendErr := make(chan error, 1)
	go func() {
		if first != nil {
			if err := client.SendMsg(first); err != nil {
				sendErr <- err
				return
			}
		}
		for {
			f := &frame{}
			if err := stream.RecvMsg(f); err != nil {
				if errors.Is(err, io.EOF) {
					sendErr <- client.CloseSend()
				} else {
					sendErr <- err
				}
				return
			}
			if err := client.SendMsg(f); err != nil {
				sendErr <- err
				return
			}
		}
	}()
	for sentHeader := false; ; {
		f := &frame{}
		err := client.RecvMsg(f)
		if !sentHeader {
			if md, herr := client.Header(); herr == nil {
				_ = stream.SendHeader(md)
			}
			sentHeader = true
		}
		if errors.Is(err, io.EOF) {
			stream.SetTrailer(client.Trailer())
			return nil
		}
		if err != nil {
			stream.SetTrailer(client.Trailer())
			return err // a status error from the host keeps its code and message
		}
		if err := stream.SendMsg(f); err != nil {
			return err
		}
		select {
		case err := <-sendErr:
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
		default:
		}
	}
}

// runPluginStream lets the SDK's helpers write RunPluginResponse messages onto a raw-codec stream.
type runPluginStream struct{ grpc.ServerStream }

func (r *runPluginStream) Send(m *pulumirpc.RunPluginResponse) error {
	payload, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return r.SendMsg(&frame{payload: payload})
}

// runPolicyPack starts a Python policy pack as the v3.259 host's RunPlugin does for kind "analyzer".
func runPolicyPack(req *pulumirpc.RunPluginRequest, server pulumirpc.LanguageRuntime_RunPluginServer) error {
	ctx := server.Context()
	if req.Info == nil {
		return errors.New("RunPlugin for a policy pack came without program info")
	}
	opts, err := packOptions(req.Info)
	if err != nil {
		return err
	}
	tc, err := toolchain.ResolveToolchain(opts)
	if err != nil {
		return err
	}
	args := append([]string{"-u", "-m", "pulumi.policy"}, req.Args...)
	args = append(args, req.Info.ProgramDirectory)
	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return err
	}
	closer, stdout, stderr, err := rpcutil.MakeRunPluginStreams(server, false)
	if err != nil {
		return err
	}
	defer closer.Close()
	// Python packs have always run in their own directory.
	cmd.Dir = req.Info.ProgramDirectory

	proxy, stdout, err := sdk.NewPolicyProxy(ctx, stdout)
	if err != nil {
		return fmt.Errorf("could not start policy pack proxy: %w", err)
	}
	config, err := proxy.AwaitConfiguration(ctx)
	if err != nil {
		return fmt.Errorf("could not get stack configuration: %w", err)
	}
	if config != nil {
		add := func(k, v string) {
			if v != "" {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
		}
		add("PULUMI_ORGANIZATION", config.Organization)
		add("PULUMI_PROJECT", config.Project)
		add("PULUMI_STACK", config.Stack)
		add("PULUMI_DRY_RUN", strconv.FormatBool(config.DryRun))
		if config.Config != nil {
			configJSON, err := json.Marshal(config.Config)
			if err != nil {
				return fmt.Errorf("could not marshal stack configuration: %w", err)
			}
			add("PULUMI_CONFIG", string(configJSON))
		}
	}
	cmd.Env = append(cmd.Env, req.Env...)
	cmd.Stdout, cmd.Stderr = stdout, stderr

	if err := cmd.Start(); err != nil {
		return fmt.Errorf("problem executing policy pack (could not run python): %w", err)
	}
	err = proxy.Attach(ctx, cmd)
	if err == nil {
		return closer.Close()
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		if status, ok := exitErr.Sys().(syscall.WaitStatus); ok {
			return server.Send(&pulumirpc.RunPluginResponse{
				Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: int32(status.ExitStatus())}, //nolint:gosec
			})
		}
	}
	return fmt.Errorf("policy pack exited unexpectedly: %w", err)
}

// packOptions reads the pack's runtime options (PulumiPolicy.yaml) as the v3.259 host's parseOptions does for a
// policy pack: virtualenv relative to the pack's directory, and the toolchain.
func packOptions(info *pulumirpc.ProgramInfo) (toolchain.PythonOptions, error) {
	opts := toolchain.PythonOptions{Root: info.RootDirectory, ProgramDir: info.ProgramDirectory}
	options := info.GetOptions().AsMap()
	if v, ok := options["virtualenv"]; ok {
		s, ok := v.(string)
		if !ok {
			return opts, errors.New("PulumiPolicy.yaml: runtime.options.virtualenv must be a string")
		}
		opts.Virtualenv = s
	}
	if v, ok := options["toolchain"]; ok {
		switch v {
		case "pip":
			opts.Toolchain = toolchain.Pip
		case "poetry":
			opts.Toolchain = toolchain.Poetry
		case "uv":
			opts.Toolchain = toolchain.Uv
		default:
			return opts, fmt.Errorf("PulumiPolicy.yaml: runtime.options.toolchain %v is not one of pip, poetry, uv", v)
		}
	}
	return opts, nil
}
