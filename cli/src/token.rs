//! Where the bearer token comes from: `--token`, or a file holding it alone (`--token-file`), which `ps` does not
//! show. Each may come from the environment too (`BALLAST_TOKEN`, `BALLAST_TOKEN_FILE`); the command line wins
//! over the environment. A token file open to other users is used, with a warning.

use std::path::Path;

use clap::parser::ValueSource;
use clap::ArgMatches;

use crate::error::CliError;
use crate::Cli;

/// The token to send, if any.
pub fn choose(cli: &Cli, matches: &ArgMatches) -> Result<Option<String>, CliError> {
    let token = cli.token.clone().filter(|t| !t.is_empty());
    let (token, file) = match (token, &cli.token_file) {
        (token, None) => return Ok(token),
        (None, Some(file)) => return read(file).map(Some),
        (Some(token), Some(file)) => (token, file),
    };
    let typed = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    match (typed("token"), typed("token_file")) {
        (true, true) => Err(CliError::Usage("give --token or --token-file, not both".to_string())),
        (true, false) => Ok(Some(token)),
        (false, true) => read(file).map(Some),
        (false, false) => {
            Err(CliError::Usage("BALLAST_TOKEN and BALLAST_TOKEN_FILE are both set: unset one".to_string()))
        }
    }
}

/// The token in `path`: the file's only word.
fn read(path: &Path) -> Result<String, CliError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|err| CliError::Failed(format!("cannot read the token file {shown}: {err}")))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(CliError::Failed(format!("the token file {shown} is empty")));
    }
    if token.contains(char::is_whitespace) {
        return Err(CliError::Failed(format!(
            "the token file {shown} must hold the token alone, on one line"
        )));
    }
    warn_if_shared(path);
    Ok(token.to_string())
}

fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::metadata(path) else { return };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let shown = path.display();
        eprintln!(
            "warning: the token file {shown} is open to other users (mode {mode:04o}): `chmod 600 {shown}`"
        );
    }
}
