use std::process::ExitCode;

fn main() -> ExitCode {
    match scs_kaas_check::cli::parse() {
        Ok(cli) => ExitCode::from(scs_kaas_check::app::main(cli)),
        Err(code) => ExitCode::from(code),
    }
}
