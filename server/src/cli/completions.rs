//! `revbloom completions SHELL` and `revbloom man`: a shell completion script and man pages,
//! generated from the same clap definitions that parse the command line, so they never
//! disagree with it. Both print to stdout (packagers redirect to a file, as with ripgrep's
//! `--generate`); `man --out-dir` writes one page per command instead.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// Arguments of `completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Install, for example:
  bash: revbloom completions bash > ~/.local/share/bash-completion/completions/revbloom
  zsh:  revbloom completions zsh > \"${fpath[1]}/_revbloom\"
  fish: revbloom completions fish > ~/.config/fish/completions/revbloom.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Arguments of `man`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Read one at once with `revbloom man | man -l -`, or install them all with
`revbloom man --out-dir /usr/local/share/man/man1`.")]
pub struct ManArgs {
    /// Print the page of this subcommand (revbloom-COMMAND(1)) instead of revbloom(1).
    #[arg(value_name = "COMMAND", conflicts_with = "out_dir")]
    command: Option<String>,
    /// Write every page (revbloom.1 and revbloom-COMMAND.1) into this folder, created if
    /// missing, and print their paths, instead of printing one page.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

/// A page of `cmd`, footed with the program and version (subcommands have no version of
/// their own, so clap_mangen would foot theirs with the subcommand's bare name).
fn man_page(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd).source(format!("revbloom {}", env!("CARGO_PKG_VERSION")))
}

/// The command tree as the pages show it: built (so subcommands carry their full names,
/// `revbloom-serve`) and without clap's `help` subcommand, which has no page of its own.
fn command_tree() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Print the completion script for `args.shell`.
pub fn run_completions(args: CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "revbloom", &mut out);
    super::print(&String::from_utf8(out).context("completion script is not UTF-8")?)
}

/// Print one man page, or write all of them to `--out-dir`.
pub fn run_man(args: ManArgs) -> Result<ExitCode> {
    let cmd = command_tree();
    if let Some(dir) = args.out_dir {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut written = String::new();
        write_pages(&cmd, &dir, &mut written)?;
        return super::print(&written);
    }
    let page = match args.command.as_deref() {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            Some(sub) if !sub.is_hide_set() => sub.clone(),
            _ => {
                let names: Vec<&str> = cmd
                    .get_subcommands()
                    .filter(|s| !s.is_hide_set())
                    .map(|s| s.get_name())
                    .collect();
                bail!(
                    "no subcommand `{name}`; pages exist for: {}",
                    names.join(", ")
                );
            }
        },
    };
    let mut out = Vec::new();
    man_page(page)
        .render(&mut out)
        .context("rendering the man page")?;
    super::print(&String::from_utf8(out).context("man page is not UTF-8")?)
}

/// Write the page of `cmd` and of each visible subcommand into `dir`, appending each path and
/// a newline to `written`. Not `clap_mangen::generate_to`, so an error names the file.
fn write_pages(cmd: &clap::Command, dir: &std::path::Path, written: &mut String) -> Result<()> {
    let man = man_page(cmd.clone());
    let path = dir.join(man.get_filename());
    let mut out = Vec::new();
    man.render(&mut out).context("rendering a man page")?;
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    written.push_str(&format!("{}\n", path.display()));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_is_named_after_its_command() {
        let cmd = command_tree();
        assert!(cmd.find_subcommand("help").is_none());
        let serve = cmd.find_subcommand("serve").unwrap();
        assert_eq!(man_page(serve.clone()).get_filename(), "revbloom-serve.1");
        assert_eq!(man_page(cmd).get_filename(), "revbloom.1");
    }
}
