package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/cloudinit"
	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/internal/printable"
	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
)

// jobs lists the jobs the daemon keeps.
func (c *opCommand) jobs(ctx context.Context, args []string) error {
	fs := c.flags("jobs", "[--json]")
	if _, err := parseN(fs, args, 0); err != nil {
		return err
	}
	fetch := func(ctx context.Context, cl *api.Client) ([]job.Job, error) { return cl.Jobs(ctx) }
	return printList(ctx, c, "jobs", fetch, func(now time.Time, js []job.Job) error {
		tw := newTable(c.stdout, "JOB", "STATUS", "EXIT", "VMID", "CREATED", "DURATION", "REPO", "REF", "REASON")
		for _, j := range js {
			tw.row(j.ID, j.Status, exitText(j.ExitCode), vmidText(j.VMID), when(j.CreatedAt, now), duration(j, now),
				j.Repo, j.Ref, dash(j.Reason))
		}
		return tw.flush()
	})
}

// jobArgs is the head of the commands about one job: it parses args for
// n positional arguments (the job first) and opens the control client.
func (c *opCommand) jobArgs(fs *flag.FlagSet, args []string, n int) ([]string, *api.Client, error) {
	pos, err := parseN(fs, args, n)
	if err != nil {
		return nil, nil, err
	}
	cl, err := c.client()
	if err != nil {
		return nil, nil, err
	}
	return pos, cl, nil
}

// job shows one job: its fields, artifacts and the end of its log.
func (c *opCommand) job(ctx context.Context, args []string) error {
	pos, cl, err := c.jobArgs(c.flags("job", "JOB [--json]"), args, 1)
	if err != nil {
		return err
	}
	j, err := cl.Job(ctx, pos[0])
	if err != nil {
		return c.explain(err)
	}
	if c.jsonOut {
		return c.printJSON(j)
	}
	now := c.now()
	tw := &table{tw: tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)}
	for _, row := range [][2]string{
		{"id", j.ID}, {"status", string(j.Status)}, {"reason", dash(j.Reason)}, {"exit code", exitText(j.ExitCode)},
		{"repo", j.Repo}, {"ref", j.Ref}, {"task", j.Task}, {"timeout", j.Timeout},
		{"artifacts globs", dash(strings.Join(j.ArtifactsGlobs, " "))}, {"env", dash(strings.Join(j.EnvKeys, " "))},
		{"keep sandbox", strconv.FormatBool(j.KeepSandbox)}, {"owner", dash(j.Owner)},
		{"sandbox", dash(sandboxText(j))}, {"created", when(j.CreatedAt, now)}, {"started", when(j.StartedAt, now)},
		{"finished", when(j.FinishedAt, now)}, {"duration", duration(j, now)},
	} {
		tw.row(row[0]+":", row[1])
	}
	if err := tw.flush(); err != nil {
		return err
	}
	if len(j.Artifacts) > 0 {
		fmt.Fprintln(c.stdout, "\nartifacts:")
		c.printArtifacts(j.Artifacts)
	}
	if j.LogTail != "" {
		fmt.Fprintln(c.stdout, "\nlog (end):")
		fmt.Fprintln(c.stdout, printable.EscapeLines(strings.TrimSuffix(j.LogTail, "\n")))
	}
	return nil
}

// artifacts lists a job's artifacts, or with "download JOB DIR" fetches
// them, each checked against its sha256 and renamed into place only then.
func (c *opCommand) artifacts(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "download" {
		return c.download(ctx, args[1:])
	}
	fs := c.flags("artifacts", "JOB [--json] | artifacts download JOB DIR")
	pos, err := parseN(fs, args, 1)
	if err != nil {
		return err
	}
	fetch := func(ctx context.Context, cl *api.Client) ([]job.Artifact, error) { return cl.JobArtifacts(ctx, pos[0]) }
	return printList(ctx, c, "artifacts", fetch, func(_ time.Time, as []job.Artifact) error {
		c.printArtifacts(as)
		return nil
	})
}

func (c *opCommand) printArtifacts(as []job.Artifact) {
	tw := newTable(c.stdout, "NAME", "SIZE", "SHA256")
	for _, a := range as {
		tw.row(a.Name, a.Size, a.SHA256)
	}
	tw.flush()
}

func (c *opCommand) download(ctx context.Context, args []string) error {
	pos, cl, err := c.jobArgs(c.flags("artifacts download", "JOB DIR"), args, 2)
	if err != nil {
		return err
	}
	id, dir := pos[0], pos[1]
	as, err := cl.JobArtifacts(ctx, id)
	if err != nil {
		return c.explain(err)
	}
	for _, a := range as {
		if err := job.CheckName(a.Name); err != nil {
			return fmt.Errorf("refusing artifact from the reaper: %w", err)
		}
		dst := filepath.Join(dir, filepath.FromSlash(a.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.CreateTemp(filepath.Dir(dst), ".download-*")
		if err != nil {
			return err
		}
		got, err := cl.DownloadArtifact(ctx, id, a.Name, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil && got.SHA256 != a.SHA256 {
			err = fmt.Errorf("%s: the download has sha256 %s, the listing said %s", a.Name, got.SHA256, a.SHA256)
		}
		if err == nil {
			err = os.Rename(f.Name(), dst)
		}
		if err != nil {
			os.Remove(f.Name())
			return c.explain(err)
		}
		fmt.Fprintf(c.stdout, "%s\t%d bytes\tsha256 %s\n", dst, got.Size, got.SHA256)
	}
	if len(as) == 0 {
		fmt.Fprintln(c.stdout, "no artifacts")
	}
	return nil
}

// logs prints a job's log; with --follow it keeps printing until the job ends.
func (c *opCommand) logs(ctx context.Context, args []string) error {
	fs := c.flags("logs", "JOB [--follow]")
	follow := fs.Bool("follow", false, "keep printing until the job ends")
	fs.BoolVar(follow, "f", false, "short for --follow")
	pos, cl, err := c.jobArgs(fs, args, 1)
	if err != nil {
		return err
	}
	var offset int64
	for {
		chunk, err := cl.JobLog(ctx, pos[0], offset)
		if err != nil {
			return c.explain(err)
		}
		if _, err := c.stdout.Write(chunk.Data); err != nil {
			return err
		}
		offset = chunk.Next
		if !*follow || chunk.Complete {
			return nil
		}
		if len(chunk.Data) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(c.pollEvery):
			}
		}
	}
}

// ssh runs ssh to a sandbox's address (from the guest agent) as the
// sandbox's user; arguments after the VMID go to ssh.
func (c *opCommand) ssh(ctx context.Context, args []string) error {
	fs := c.flags("ssh", "VMID [--user NAME] [-- SSH ARGS...]")
	user := fs.String("user", cloudinit.DefaultUser, "the sandbox's account `name`")
	var extra []string
	for i, a := range args {
		if a == "--" {
			args, extra = args[:i], args[i+1:]
			break
		}
	}
	vmid, _, err := parseVMID(fs, args, 1)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	ip, err := cl.Address(ctx, vmid)
	if err != nil {
		return c.explain(fmt.Errorf("address of vm %d: %w", vmid, err))
	}
	bin, err := exec.LookPath("ssh")
	if err != nil {
		return errors.New("ssh is not installed: install openssh-client")
	}
	argv := append([]string{"ssh", "-l", *user}, extra...)
	argv = append(argv, ip.String())
	return c.exec(bin, argv, os.Environ())
}

func exitText(code *int) string {
	if code == nil {
		return "-"
	}
	return strconv.Itoa(*code)
}

func vmidText(vmid int) string {
	if vmid == 0 {
		return "-"
	}
	return strconv.Itoa(vmid)
}

func sandboxText(j job.Job) string {
	if j.VMID == 0 {
		return ""
	}
	return fmt.Sprintf("vm %d on %s", j.VMID, j.Node)
}

func duration(j job.Job, now time.Time) string {
	end := j.FinishedAt
	if end.IsZero() {
		end = now
	}
	return short(end.Sub(j.CreatedAt))
}

// execSSH replaces the process with ssh.
func execSSH(bin string, argv, env []string) error { return syscall.Exec(bin, argv, env) }
