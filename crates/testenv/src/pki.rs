//! The certificates and keys a control plane on loopback needs: one CA for clients and
//! serving, a front-proxy CA (so the aggregation layer's request-header authentication is
//! configured rather than erroring), the API server's serving certificate, a client
//! certificate per identity, and the service-account signing key. ECDSA P-256 throughout:
//! fast to generate, and every Kubernetes component reads PKCS#8 PEM.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn cert_pem(&self) -> anyhow::Result<String> {
        read(&self.cert)
    }
    pub fn key_pem(&self) -> anyhow::Result<String> {
        read(&self.key)
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Everything under `<dir>/pki`.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: CertFiles,
    pub front_proxy_ca: CertFiles,
    pub front_proxy_client: CertFiles,
    pub apiserver: CertFiles,
    pub admin: CertFiles,
    pub scheduler: CertFiles,
    pub controller_manager: CertFiles,
    /// The service-account token signing key (private) and its public half.
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
}

/// Who a client certificate says it is: the API server maps CN to the user and O to groups.
pub struct Identity<'a> {
    pub user: &'a str,
    pub groups: &'a [&'a str],
}

struct Authority {
    params: CertificateParams,
    key: KeyPair,
}

impl Authority {
    fn new(name: &str) -> anyhow::Result<Authority> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name, &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ok(Authority {
            params,
            key: KeyPair::generate()?,
        })
    }

    fn write(&self, dir: &Path, name: &str) -> anyhow::Result<CertFiles> {
        let cert = self.params.self_signed(&self.key)?;
        write_pair(dir, name, &cert.pem(), &self.key.serialize_pem())
    }

    fn issue(
        &self,
        dir: &Path,
        name: &str,
        params: CertificateParams,
    ) -> anyhow::Result<CertFiles> {
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        write_pair(dir, name, &cert.pem(), &key.serialize_pem())
    }
}

fn dn(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in organizations {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn client_params(identity: &Identity<'_>) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(identity.user, identity.groups);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

fn write_pair(dir: &Path, name: &str, cert: &str, key: &str) -> anyhow::Result<CertFiles> {
    let files = CertFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.cert, cert)?;
    write_private(&files.key, key)?;
    Ok(files)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    Ok(())
}

/// The names the API server's certificate is valid for: loopback, and the in-cluster names
/// a pod's client uses (`kubernetes.default.svc`, the service IP).
pub const APISERVER_NAMES: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "10.96.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

impl Pki {
    /// Generates a fresh PKI under `dir/pki`.
    pub fn generate(dir: &Path) -> anyhow::Result<Pki> {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let ca = Authority::new("ferry-testenv-ca")?;
        let front = Authority::new("ferry-testenv-front-proxy-ca")?;

        let mut serving = CertificateParams::new(
            APISERVER_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )?;
        serving.distinguished_name = dn("kube-apiserver", &[]);
        serving.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];

        let sa = KeyPair::generate()?;
        let service_account_key = dir.join("service-account.key");
        let service_account_pub = dir.join("service-account.pub");
        write_private(&service_account_key, &sa.serialize_pem())?;
        std::fs::write(&service_account_pub, sa.public_key_pem())?;

        Ok(Pki {
            apiserver: ca.issue(&dir, "apiserver", serving)?,
            admin: ca.issue(
                &dir,
                "admin",
                client_params(&Identity {
                    user: "ferry-testenv-admin",
                    groups: &["system:masters"],
                }),
            )?,
            scheduler: ca.issue(
                &dir,
                "kube-scheduler",
                client_params(&Identity {
                    user: "system:kube-scheduler",
                    groups: &[],
                }),
            )?,
            controller_manager: ca.issue(
                &dir,
                "kube-controller-manager",
                client_params(&Identity {
                    user: "system:kube-controller-manager",
                    groups: &[],
                }),
            )?,
            front_proxy_client: front.issue(
                &dir,
                "front-proxy-client",
                client_params(&Identity {
                    user: "front-proxy-client",
                    groups: &[],
                }),
            )?,
            ca: ca.write(&dir, "ca")?,
            front_proxy_ca: front.write(&dir, "front-proxy-ca")?,
            service_account_key,
            service_account_pub,
        })
    }
}
