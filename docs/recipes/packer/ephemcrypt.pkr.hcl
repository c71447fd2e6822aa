# Packer: an AMI with ephemcrypt, from Amazon Linux 2023 or Ubuntu 24.04, x86_64 or arm64.
#
#   make deb rpm                       # dist/ephemcrypt_*_amd64.deb, dist/ephemcrypt-*.x86_64.rpm
#   packer init docs/recipes/packer
#   packer build -var distro=al2023 -var package=dist/ephemcrypt-0.1.0-1.x86_64.rpm docs/recipes/packer
#   packer build -var distro=ubuntu -var package=dist/ephemcrypt_0.1.0_amd64.deb \
#     -var config=docs/recipes/kubernetes/ephemcrypt.conf docs/recipes/packer
#
# (arm64: make deb rpm ARCH=aarch64, then -var arch=arm64 and the arm64 package.) The shell
# provisioner runs docs/recipes/install-ephemcrypt.sh, which the VM test tries on Debian 12.
packer {
  required_plugins {
    amazon = {
      version = ">= 1.3.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

variable "distro" {
  type        = string
  default     = "al2023"
  description = "al2023 or ubuntu"
  validation {
    condition     = contains(["al2023", "ubuntu"], var.distro)
    error_message = "The distro is al2023 or ubuntu."
  }
}

variable "arch" {
  type    = string
  default = "x86_64"
  validation {
    condition     = contains(["x86_64", "arm64"], var.arch)
    error_message = "The arch is x86_64 or arm64."
  }
}

variable "package" {
  type        = string
  description = "The package for the distro and arch: the .rpm of make rpm (al2023), the .deb of make deb (ubuntu)"
}

variable "config" {
  type        = string
  default     = ""
  description = "An ephemcrypt.conf for the image (empty: the defaults)"
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "instance_type" {
  type        = string
  default     = ""
  description = "The build instance; one with instance store (c6id, c7gd) shows in the build log what a boot would take"
}

locals {
  os = {
    al2023 = {
      owner = "amazon"
      name  = "al2023-ami-2023.*-kernel-6.*-${var.arch}"
      user  = "ec2-user"
    }
    ubuntu = {
      owner = "099720109477" # Canonical
      name  = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-${var.arch == "arm64" ? "arm64" : "amd64"}-server-*"
      user  = "ubuntu"
    }
  }
  instance_type = var.instance_type != "" ? var.instance_type : (var.arch == "arm64" ? "c7gd.large" : "c6id.large")
  stamp         = formatdate("YYYYMMDDhhmmss", timestamp())
}

source "amazon-ebs" "node" {
  region        = var.region
  instance_type = local.instance_type
  ssh_username  = local.os[var.distro].user
  ami_name      = "ephemcrypt-${var.distro}-${var.arch}-${local.stamp}"
  source_ami_filter {
    owners      = [local.os[var.distro].owner]
    most_recent = true
    filters = {
      name                = local.os[var.distro].name
      architecture        = var.arch
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
  }
}

build {
  sources = ["source.amazon-ebs.node"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/ephemcrypt"]
  }
  provisioner "file" {
    sources = concat(
      [var.package, "${path.root}/../install-ephemcrypt.sh"],
      var.config != "" ? [var.config] : []
    )
    destination = "/tmp/ephemcrypt/"
  }
  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "PACKAGE=/tmp/ephemcrypt/${basename(var.package)}",
      "CONFIG=${var.config != "" ? "/tmp/ephemcrypt/${basename(var.config)}" : ""}",
      "METRICS=yes",
    ]
    inline = [
      "sh /tmp/ephemcrypt/install-ephemcrypt.sh \"$PACKAGE\" \"$CONFIG\"",
      "rm -rf /tmp/ephemcrypt",
    ]
  }
}
