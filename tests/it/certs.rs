//! Test certificates made with the openssl CLI: a CA, and leaf certificates it signs for
//! servers (127.0.0.1 / localhost) or clients (a CN and a DNS name).
use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl CLI on PATH");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

const EC: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/// A CA in `dir`: `<name>.crt` and `<name>.key`.
pub struct Ca {
    pub dir: PathBuf,
    pub name: String,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        let subj = format!("/CN={name}");
        let mut args = vec!["req", "-x509"];
        args.extend(EC);
        args.extend(["-keyout", &key, "-out", &crt, "-days", "2", "-subj", &subj]);
        args.extend([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &args);
        Ca { dir: dir.to_path_buf(), name: name.to_string() }
    }

    pub fn crt(&self) -> PathBuf {
        self.dir.join(format!("{}.crt", self.name))
    }

    /// A server certificate for 127.0.0.1 and localhost: (`<name>.crt`, `<name>.key`).
    pub fn server(&self, name: &str) -> (PathBuf, PathBuf) {
        self.issue(name, "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    }

    /// A client certificate with subject CN `cn` and DNS name `dns`.
    pub fn client(&self, name: &str, cn: &str, dns: &str) -> (PathBuf, PathBuf) {
        self.issue(name, cn, &format!("subjectAltName=DNS:{dns}\nextendedKeyUsage=clientAuth\n"))
    }

    fn issue(&self, name: &str, cn: &str, ext: &str) -> (PathBuf, PathBuf) {
        let d = &self.dir;
        let (crt, key, csr, extf) =
            (format!("{name}.crt"), format!("{name}.key"), format!("{name}.csr"), format!("{name}.ext"));
        let subj = format!("/CN={cn}");
        let mut args = vec!["req"];
        args.extend(EC);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(d, &args);
        std::fs::write(d.join(&extf), format!("basicConstraints=CA:FALSE\n{ext}")).unwrap();
        let (ca_crt, ca_key) = (format!("{}.crt", self.name), format!("{}.key", self.name));
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-set_serial",
                &serial(),
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &extf,
            ],
        );
        (d.join(crt), d.join(key))
    }
}

/// A random serial number, so a re-issued certificate differs from the one it replaces.
fn serial() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{}", n % 1_000_000_000_000)
}
